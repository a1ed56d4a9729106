"""Phrases ("MIDI voice activity"): when the player starts playing and when a phrase has ended.

A phrase starts with the first note after silence. It ends when every key has been up for a gap
that scales with the tempo: long enough that a rest inside a line is not taken for the end, short
enough that the answer can still start within a beat (the gap plus the answer's wait stay ≤ 1 beat).
The sustain pedal does not hold a phrase open: a pianist often lets the last chord ring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sideman.model.events import Note

# The end-of-phrase gap, in beats of the tracked tempo, and its limits in seconds.
GAP_BEATS = 0.5
MIN_GAP_S = 0.2
MAX_GAP_S = 0.6


def phrase_end_gap_s(beat_period_s: float) -> float:
    return min(MAX_GAP_S, max(MIN_GAP_S, GAP_BEATS * beat_period_s))


@dataclass
class Phrase:
    start_s: float
    end_s: float | None = None          # the last key release (set when the phrase has ended)
    notes: list[Note] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        end = self.end_s if self.end_s is not None else (self.notes[-1].onset_s if self.notes else self.start_s)
        return max(0.0, end - self.start_s)


class PhraseListener:
    def __init__(self, fixed_gap_s: float | None = None):
        self.fixed_gap_s = fixed_gap_s  # a fixed silence rule instead of the tempo-scaled gap (baselines)
        self.current: Phrase | None = None
        self.last: Phrase | None = None
        self._held: dict[int, tuple[float, int]] = {}  # pitch -> (onset, velocity)
        self._last_release_s: float | None = None

    @property
    def in_phrase(self) -> bool:
        return self.current is not None

    @property
    def last_release_s(self) -> float | None:
        """When the last key of the phrase being played went up (None while keys are down)."""
        return self._last_release_s if not self._held else None

    @property
    def keys_down(self) -> int:
        return len(self._held)

    def note_on(self, t_s: float, pitch: int, velocity: int) -> Phrase | None:
        """Returns the new phrase when this note starts one."""
        started = None
        if self.current is None:
            self.current = started = Phrase(start_s=t_s)
        if pitch in self._held:  # a repeated note-on without an off: close the first
            self._close(t_s, pitch)
        self._held[pitch] = (t_s, velocity)
        return started

    def note_off(self, t_s: float, pitch: int) -> None:
        if pitch in self._held:
            self._close(t_s, pitch)
            if not self._held:
                self._last_release_s = t_s

    def _close(self, t_s: float, pitch: int) -> None:
        onset, velocity = self._held.pop(pitch)
        if self.current is not None:
            self.current.notes.append(Note(onset, pitch, velocity, t_s - onset))

    def end_gap_s(self, beat_period_s: float) -> float:
        """How long every key must stay up for the phrase to end."""
        return self.fixed_gap_s if self.fixed_gap_s is not None else phrase_end_gap_s(beat_period_s)

    def check_end(self, t_s: float, beat_period_s: float) -> Phrase | None:
        """Returns the phrase when it has just ended (all keys up for the tempo-scaled gap)."""
        if self.current is None or self._held or self._last_release_s is None:
            return None
        if t_s - self._last_release_s < self.end_gap_s(beat_period_s):
            return None
        phrase = self.current
        phrase.end_s = self._last_release_s
        phrase.notes.sort(key=lambda n: (n.onset_s, n.pitch))
        self.current, self.last = None, phrase
        return phrase

    def release_all(self, t_s: float) -> None:
        for pitch in list(self._held):
            self.note_off(t_s, pitch)
