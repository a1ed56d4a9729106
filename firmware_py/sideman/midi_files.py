"""Reading MIDI files into the shared event form (notes with durations, pedal changes).

mido on purpose: it is already on the box and it reads every odd file in the corpora; corpus-scale
training may switch to symusic later as long as it yields the same events."""

from __future__ import annotations

from collections import defaultdict, deque
from pathlib import Path

import mido

from sideman.model.events import HUMAN, Event, Note, Pedal, sort_events

CC_SUSTAIN = 64


class MidiFileError(ValueError):
    """A file that is not readable MIDI (the message names the file and the reason)."""


def read_performance(path: str | Path, voice: int = HUMAN, track_names: set[str] | None = None) -> list[Event]:
    """All notes (with durations) and sustain-pedal changes of a file, in time order, in seconds.

    track_names: only tracks with these names (case-insensitive), e.g. {"piano"}; None reads all.
    Raises MidiFileError for a broken file."""
    try:
        midi = mido.MidiFile(str(path), clip=True)
    except Exception as exc:  # mido raises many kinds (OSError, EOFError, KeyError, ValueError...)
        raise MidiFileError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    wanted = {n.lower() for n in track_names} if track_names else None
    tracks = midi.tracks
    if wanted is not None:
        tracks = [t for t in midi.tracks if (t.name or "").strip().lower() in wanted]
    # Merge the chosen tracks, keeping tempo changes from every track so times stay right.
    selected = mido.merge_tracks(list(tracks) + ([_absolute_to_track(midi.tracks, "set_tempo")] if wanted else []))
    events: list[Event] = []
    open_notes: dict[tuple[int, int], deque] = defaultdict(deque)
    pedal_down: dict[int, bool] = {}
    t = 0.0
    tempo = 500_000
    for msg in selected:
        t += mido.tick2second(msg.time, midi.ticks_per_beat, tempo) if msg.time else 0.0
        if msg.is_meta:
            if msg.type == "set_tempo":
                tempo = msg.tempo
            continue
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[(msg.channel, msg.note)].append((t, msg.velocity))
        elif msg.type in ("note_off", "note_on"):
            started = open_notes.get((msg.channel, msg.note))
            if started:
                onset, velocity = started.popleft()
                events.append(Note(onset, msg.note, velocity, max(0.0, t - onset), voice))
        elif msg.type == "control_change" and msg.control == CC_SUSTAIN:
            down = msg.value >= 64
            if pedal_down.get(msg.channel, False) != down:
                pedal_down[msg.channel] = down
                events.append(Pedal(t, down, voice))
    for (_channel, pitch), started in open_notes.items():  # notes never released: end at the file's end
        for onset, velocity in started:
            events.append(Note(onset, pitch, velocity, max(0.0, t - onset), voice))
    return sort_events(events)


def _absolute_to_track(tracks, meta_type: str) -> mido.MidiTrack:
    """One track holding only the given meta messages of all tracks, with correct delta times."""
    absolute = []
    for track in tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.is_meta and msg.type == meta_type:
                absolute.append((now, msg))
    absolute.sort(key=lambda item: item[0])
    out = mido.MidiTrack()
    last = 0
    for now, msg in absolute:
        out.append(msg.copy(time=now - last))
        last = now
    return out
