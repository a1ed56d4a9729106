"""The key the human plays in: Krumhansl–Schmuckler correlation over a decaying pitch-class histogram.

Each note adds its duration (when known; a fixed amount live, where note_on cannot know it) times a
velocity factor to its pitch class; the histogram halves every half_life_s, so a modulation takes over
after some bars. The answer sticks unless a rival key correlates clearly better (no flicker between
relative or neighbouring keys on every note)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sideman.listen.chords import NOTE_NAMES

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; the chord scales bring the raised 6th and 7th
MODES = ("major", "minor")


@dataclass(frozen=True)
class Key:
    tonic: int      # pitch class
    mode: str       # "major" | "minor"

    @property
    def label(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    def scale_pitch_classes(self) -> frozenset[int]:
        scale = MAJOR_SCALE if self.mode == "major" else MINOR_SCALE
        return frozenset((self.tonic + i) % 12 for i in scale)

    def __str__(self) -> str:
        return self.label


def _profiles() -> np.ndarray:
    """24 rows (12 major tonics, then 12 minor), each centred and scaled for a Pearson correlation."""
    rows = []
    for profile in (MAJOR_PROFILE, MINOR_PROFILE):
        p = np.array(profile) - np.mean(profile)
        p /= np.linalg.norm(p)
        rows.extend(np.roll(p, tonic) for tonic in range(12))
    return np.array(rows)


_PROFILES = _profiles()


class KeyListener:
    """Krumhansl–Schmuckler profile correlation over a decaying pitch-class histogram."""

    LIVE_WEIGHT_S = 0.3     # what a note counts when its duration is not known
    MAX_WEIGHT_S = 2.0      # a long held note counts no more than this
    MIN_PITCH_CLASSES = 3   # fewer sounding pitch classes say nothing about a key
    STICKY = 0.05           # correlation a rival key needs above the current one

    def __init__(self, half_life_s: float = 15.0):
        self.half_life_s = half_life_s
        self._histogram = np.zeros(12)
        self._last_t: float | None = None
        self._current = -1
        self._dirty = False

    def note_on(self, t_s: float, pitch: int, velocity: int, duration_s: float | None = None) -> None:
        if self._last_t is not None and t_s > self._last_t:
            self._histogram *= 2.0 ** (-(t_s - self._last_t) / self.half_life_s)
        self._last_t = t_s if self._last_t is None else max(t_s, self._last_t)
        length = self.LIVE_WEIGHT_S if duration_s is None else min(max(duration_s, 0.05), self.MAX_WEIGHT_S)
        self._histogram[pitch % 12] += length * (0.5 + 0.5 * min(127, max(1, velocity)) / 127)
        self._dirty = True

    def key(self, t_s: float) -> Key | None:
        # A uniform decay does not change a correlation: only new notes can move the answer.
        if self._dirty:
            self._dirty = False
            self._update()
        if self._current < 0:
            return None
        return Key(self._current % 12, MODES[self._current // 12])

    def _update(self) -> None:
        h = self._histogram
        if np.count_nonzero(h > 0.05 * h.max()) < self.MIN_PITCH_CLASSES:
            return
        centred = h - h.mean()
        norm = math.sqrt(float(centred @ centred))
        if norm <= 1e-12:
            return
        correlations = _PROFILES @ (centred / norm)
        best = int(np.argmax(correlations))
        if self._current < 0 or correlations[best] > correlations[self._current] + self.STICKY:
            self._current = best
