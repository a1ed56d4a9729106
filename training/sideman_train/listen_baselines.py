"""The simple listeners the box's own are measured against (`sideman-train eval-listen`), and the
causal beat tapping the beat evaluation scores: offline tools, not shipped in the box's package.

    TemplateBaseline     chords: binary templates on only the notes sounding now (no decay, no bass)
    FixedTempoBaseline   beats: a constant-tempo grid anchored at the first onset
    tap_beats            the beats a tracker would have tapped live, each decided from earlier onsets
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from sideman.listen.chords import QUALITIES, QUALITY_ORDER, Chord, Keys, chord_at
from sideman.listen.tempo import BeatEstimate, grid_estimate


def _binary_templates() -> np.ndarray:
    rows = []
    for quality in QUALITY_ORDER:
        row = np.zeros(12)
        row[[i % 12 for i in QUALITIES[quality]]] = 1.0
        row /= np.linalg.norm(row)
        rows.extend(np.roll(row, root) for root in range(12))
    return np.array(rows)


_BINARY = _binary_templates()


class TemplateBaseline:
    """The simple baseline: same interface as ChordListener, template matching (cosine with binary
    templates of the same qualities) on only the notes sounding right now (held keys and pedal); no
    decay, no bass weighting, no hysteresis."""

    def __init__(self, half_life_s: float = 0.8):  # half_life_s unused: same signature as ChordListener
        self._keys = Keys()

    def note_on(self, t_s: float, pitch: int, velocity: int) -> None:
        self._keys.press(pitch)

    def note_off(self, t_s: float, pitch: int) -> None:
        self._keys.release(pitch)

    def sustain(self, t_s: float, down: bool) -> None:
        self._keys.sustain(down)

    def chord(self, t_s: float) -> Chord | None:
        w = np.zeros(12)
        for pitch in (*self._keys.down, *self._keys.pedaled):
            w[pitch % 12] = 1.0
        if np.count_nonzero(w) < 2:
            return None
        return chord_at(int(np.argmax(_BINARY @ w)), None)


class FixedTempoBaseline:
    """The simple baseline: a constant-tempo grid (the initial BPM) anchored at the first onset."""

    def __init__(self, initial_bpm: float = 120.0, min_bpm: float = 50.0, max_bpm: float = 260.0):
        self.initial_bpm = float(initial_bpm)
        self.reset()

    def reset(self) -> None:
        self._anchor_s: float | None = None

    def onset(self, t_s: float, velocity: int = 64, pitch: int | None = None) -> None:
        if self._anchor_s is None:
            self._anchor_s = t_s

    def estimate(self, t_s: float) -> BeatEstimate:
        anchor = 0.0 if self._anchor_s is None else self._anchor_s
        return grid_estimate(anchor, 60.0 / self.initial_bpm, t_s, 0.0)


def tap_beats(onsets_s: Iterable[float | tuple[float, int]], tracker, until_s: float | None = None) -> list[float]:
    """The beats the tracker would have tapped live: each one decided only from onsets before it.

    onsets_s: times in order, or (time, velocity) pairs. Ends at until_s (default: the last onset)."""
    return [beat for beat, _bpm in tap_beats_with_tempo(onsets_s, tracker, until_s)]


def tap_beats_with_tempo(onsets_s: Iterable[float | tuple[float, int]], tracker,
                         until_s: float | None = None) -> list[tuple[float, float]]:
    """tap_beats, with the tempo the tracker believed in at each tapped beat.

    Between two onsets the grid does not change, so every beat it predicts in that gap is tapped;
    a beat closer than half a period to the one tapped before (the grid jumped back) is dropped."""
    tapped: list[tuple[float, float]] = []
    last_t: float | None = None

    def tap_until(end_s: float) -> None:
        estimate = tracker.estimate(last_t)
        previous = tapped[-1][0] if tapped else None
        beat = estimate.next_beat_after(max(last_t, previous) if previous is not None else last_t)
        while beat <= end_s:  # a beat due with the next onset was still decided before it
            if previous is None or beat - previous > 0.5 * estimate.period_s:
                tapped.append((beat, estimate.tempo_bpm))
                previous = beat
            beat += estimate.period_s

    for item in onsets_s:
        t, rest = (item, ()) if isinstance(item, (int, float)) else (item[0], item[1:])
        if last_t is not None:
            tap_until(t)
        tracker.onset(t, *rest)
        last_t = t
    if last_t is not None:
        tap_until(until_s if until_s is not None else last_t)
    return tapped
