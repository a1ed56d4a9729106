"""Every session captured as a two-track MIDI file (human, sideman) in the user's data directory."""

from __future__ import annotations

import io
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import mido

from sideman import messages as mm
from sideman.clock import NS_PER_S, now_ns
from sideman.paths import sessions_dir, write_atomically

log = logging.getLogger("sideman.capture")

HUMAN, AI = 0, 1
TRACK_NAMES = ("human", "sideman")
TICKS_PER_BEAT = 960
CAPTURE_TEMPO_BPM = 120  # the file's nominal tempo: 960 ticks per beat at 120 BPM = ~0.5 ms per tick
MAX_EVENTS = 2_000_000  # ~ several hours of dense playing (~28 MB); past it the capture stops growing
_RECORD = struct.Struct("<qBH")   # t_ns, voice, message length; the message's bytes follow


class SessionRecorder:
    """Collects (voice, t_ns, message) from the input and sender threads; writes them at the end.

    Kept packed in one bytearray (11 bytes of time, voice and length, then the message's bytes):
    a 3-byte note is 14 bytes, against ~170 as Python tuples, so a long gig's capture stays a few
    MB (an hour's soak grew the box's memory 1.5 MB every 5 minutes with tuples)."""

    def __init__(self):
        self.started_ns = now_ns()
        self.started_wall = time.time()
        self._log = bytearray()
        self._count = 0
        self.dropped = 0

    def record(self, voice: int, message, t_ns: int) -> None:
        # Clock ticks and active sensing would bloat the file and say nothing about the music.
        if message[0] >= 0xF8:
            return
        if self._count >= MAX_EVENTS:
            self.dropped += 1
            return
        try:
            data = bytes(message)
        except ValueError:   # not MIDI bytes: nothing a file could hold
            return
        # One in-place extend per event: atomic under the GIL, so the input and sender threads
        # never interleave inside a record.
        self._log += _RECORD.pack(t_ns, voice, len(data)) + data
        self._count += 1

    def events(self) -> list[tuple[int, int, tuple]]:
        """(voice, t_ns, message) in the order they were recorded."""
        log_bytes = bytes(self._log)   # a snapshot of whole records
        out, at = [], 0
        while at < len(log_bytes):
            t_ns, voice, length = _RECORD.unpack_from(log_bytes, at)
            at += _RECORD.size
            out.append((voice, t_ns, tuple(log_bytes[at:at + length])))
            at += length
        return out

    def note_counts(self) -> tuple[int, int]:
        events = self.events()
        return (sum(1 for v, _, m in events if v == HUMAN and mm.is_note_on(m)),
                sum(1 for v, _, m in events if v == AI and mm.is_note_on(m)))

    def to_midifile(self) -> mido.MidiFile:
        midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        events = self.events()
        ns_per_tick = 60 * NS_PER_S / (CAPTURE_TEMPO_BPM * TICKS_PER_BEAT)
        for voice, name in enumerate(TRACK_NAMES):
            track = mido.MidiTrack()
            track.append(mido.MetaMessage("track_name", name=name, time=0))
            if voice == HUMAN:
                track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(CAPTURE_TEMPO_BPM), time=0))
            last_tick = 0
            for v, t_ns, message in sorted((e for e in events if e[0] == voice), key=lambda e: e[1]):
                try:
                    msg = mido.Message.from_bytes(list(message))
                except ValueError:
                    continue
                tick = max(0, round((t_ns - self.started_ns) / ns_per_tick))
                track.append(msg.copy(time=tick - last_tick))
                last_tick = tick
            track.append(mido.MetaMessage("end_of_track", time=0))
            midi.tracks.append(track)
        return midi

    def save(self, directory: Path | None = None) -> Path | None:
        """Write the session if anything was played; returns the file (None for an empty session)."""
        if not self._log:
            return None
        directory = directory or sessions_dir()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started_wall))
        path = directory / f"session-{stamp}.mid"
        n = 1
        while path.exists():
            n += 1
            path = directory / f"session-{stamp}-{n}.mid"
        buffer = io.BytesIO()
        self.to_midifile().save(file=buffer)
        write_atomically(path, buffer.getvalue())
        if self.dropped:
            log.warning("session capture was full: %d late events not saved", self.dropped)
        return path


@dataclass
class SessionSummary:
    path: Path
    seconds: float
    human_notes: int
    ai_notes: int

    def as_dict(self) -> dict:
        return {"file": str(self.path), "seconds": round(self.seconds, 1),
                "human_notes": self.human_notes, "ai_notes": self.ai_notes}


def list_sessions(directory: Path | None = None) -> list[SessionSummary]:
    directory = directory or sessions_dir()
    summaries = []
    for path in sorted(directory.glob("session-*.mid")):
        try:
            midi = mido.MidiFile(path)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("skipping unreadable session %s: %s", path.name, exc)
            continue
        counts = [sum(1 for m in track if m.type == "note_on" and m.velocity > 0) for track in midi.tracks]
        counts += [0, 0]
        summaries.append(SessionSummary(path, midi.length, counts[0], counts[1]))
    return summaries
