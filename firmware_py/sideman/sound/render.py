"""A duet rendered to an audio file offline, through the same two pianos the box plays live."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from sideman.paths import atomic_path
from sideman.sound.piano import SAMPLE_RATE, DuetPiano
from sideman.sound.soundfonts import SoundError, find_soundfont

# libsndfile (inside FluidSynth) writes these; .ogg is Ogg Vorbis.
FILE_TYPES = {".wav": "wav", ".flac": "flac", ".ogg": "oga", ".oga": "oga"}
BLOCK_FRAMES = 64      # events land on 64-frame boundaries: 1.3 ms at 48 kHz
TAIL_S = 2.0           # the last notes ring out


def file_type(path: Path) -> str:
    try:
        return FILE_TYPES[path.suffix.lower()]
    except KeyError:
        raise SoundError(f"{path}: audio files are .wav, .flac or .ogg") from None


def render_audio(path: Path, timed_messages: Iterable[tuple[float, Sequence[int]]], ai_channel: int,
                 soundfont: str | Path | None = None, tail_s: float = TAIL_S) -> float:
    """Play (seconds, MIDI message) pairs through the duet pianos into `path` (.wav/.flac/.ogg),
    written beside it and renamed when complete. Returns the audio's length in seconds."""
    path = Path(path)
    kind = file_type(path)
    with atomic_path(path) as partial:
        frame = _render(partial, kind, path, timed_messages, ai_channel, soundfont, tail_s)
    return frame / SAMPLE_RATE


def _render(partial: Path, kind: str, path: Path, timed_messages, ai_channel: int, soundfont, tail_s: float) -> int:
    """FluidSynth's file renderer writing `partial` (`path` names the file in errors); the frames written."""
    piano = DuetPiano(find_soundfont(soundfont), ai_channel,
                      {"audio.file.name": str(partial), "audio.file.type": kind,
                       "audio.period-size": BLOCK_FRAMES})
    fl = piano.fl
    renderer = fl.new_fluid_file_renderer(piano.synth.synth)
    if not renderer:
        piano.delete()
        raise SoundError(f"{path}: FluidSynth could not write this file")
    frame = 0
    try:
        events = sorted(timed_messages, key=lambda item: item[0])
        for t_s, message in events:
            due = int(round(max(0.0, t_s) * SAMPLE_RATE))
            while frame + BLOCK_FRAMES <= due:
                fl.fluid_file_renderer_process_block(renderer)
                frame += BLOCK_FRAMES
            piano.play(message)
        end = frame + int(tail_s * SAMPLE_RATE)
        while frame < end:
            fl.fluid_file_renderer_process_block(renderer)
            frame += BLOCK_FRAMES
    finally:
        fl.delete_fluid_file_renderer(renderer)  # finishes the file (header, last block)
        piano.delete()
    return frame
