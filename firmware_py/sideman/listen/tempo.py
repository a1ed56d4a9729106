"""Online tempo and beat-phase tracking from note onsets: where the band would tap its foot.

All causal, onsets in time order:
- Chords: notes within CHORD_S of a chord's first note are one onset; more notes, louder notes
  and bass notes (when the pitch is given) make it stronger.
- Tempo: a decaying histogram of inter-onset intervals between all pairs of recent onsets, on a
  log-time axis. A comb scores each candidate beat period by the histogram at 1..4 periods; a
  log-normal prior around PRIOR_BPM settles the double/half-time ambiguity.
- Beat grid: a phase-locked loop. An onset near a predicted beat nudges phase and period, off-beat
  onsets leave the grid alone, so it runs on through rests and syncopation. When the histogram
  keeps preferring another period (a tempo change, or a wrong first guess), or the recent onsets
  keep piling up on another phase (the loop locked onto the off-beat), the grid jumps there and is
  refitted to the recent onsets by least squares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CHORD_S = 0.040           # notes closer than this to a group's first note are one onset
BASS_PITCH = 52           # notes below E3 (when the pitch is given) ...
BASS_WEIGHT = 3.0         # ... weigh this much more: the left hand's bass marks the beat
PRIOR_BPM = 110.0         # where the tempo prior peaks ...
PRIOR_OCTAVES = 1.0       # ... and its width (one standard deviation, in octaves)

IOI_MIN_S, IOI_MAX_S = 0.08, 3.2   # inter-onset intervals the histogram keeps
IOI_STEP = 0.01                     # histogram bin width, in log-time (1 %)
HISTORY = 48                        # onsets remembered for pairing
HIST_DECAY_S = 5.0                  # the histogram forgets with this time constant
LAG_DECAY_S = 5.0                   # longer intervals count less: a steady stream is its own beat
COMB = (1.0, 0.7, 0.5, 0.4)         # weights of 1, 2, 3, 4 periods in a candidate's comb
COMB_SIGMA = 0.025                  # timing tolerance of the comb, log-time

PHASE_WINDOW = 0.2                  # an onset within this many periods of a beat locks the loop
PHASE_GAIN = 0.4                    # share of the phase error corrected per (full-strength) onset
PERIOD_GAIN = 0.12                  # share of the per-beat error taken into the period
SWITCH_RATIO = 1.15                 # a challenger period must out-score the current one by this ...
SWITCH_AFTER = 3                    # ... for this many onsets in a row
FAST_SWITCH_RATIO = 1.3             # (or at once when it wins by this much)
PHASE_MEMORY = 8.0                  # beats of onsets that vote on the phase
PHASES = 32                         # candidate phases per beat
PHASE_SHARPNESS = 8.0               # von Mises concentration of each onset's vote (~ ±1/20 beat)
PHASE_SWITCH_RATIO = 2.0            # the grid moves to another phase only when it wins by this much
FIT_BEATS = 8.0                     # beats of onsets a new grid is fitted to
AGREE = 0.04                        # periods within 4 % are the same tempo


_PHASE_ANGLES = 2 * np.pi * np.arange(PHASES) / PHASES


@dataclass(frozen=True)
class BeatEstimate:
    tempo_bpm: float
    period_s: float          # 60 / tempo_bpm
    last_beat_s: float       # the most recent beat at or before the query time (may be predicted)
    confidence: float        # 0..1 (0 = still the initial guess)

    def next_beat_after(self, t_s: float) -> float:
        """The first beat on this grid strictly after t_s."""
        k = math.floor((t_s - self.last_beat_s) / self.period_s) + 1
        beat = self.last_beat_s + k * self.period_s
        while beat <= t_s:  # float rounding at exact beat times
            k += 1
            beat = self.last_beat_s + k * self.period_s
        return beat

    def beat_position(self, t_s: float) -> float:
        """Beats since last_beat_s (above 1 when extrapolating past the next beat)."""
        return (t_s - self.last_beat_s) / self.period_s


def grid_estimate(anchor_s: float, period_s: float, t_s: float, confidence: float) -> BeatEstimate:
    last = anchor_s + math.floor((t_s - anchor_s) / period_s) * period_s
    return BeatEstimate(60.0 / period_s, period_s, last, confidence)


@lru_cache(maxsize=8)
def _comb_for(min_bpm: float, max_bpm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Histogram bins (log s), candidate periods (s), the comb matrix and the prior; built once."""
    n_bins = int(math.log(IOI_MAX_S / IOI_MIN_S) / IOI_STEP) + 1
    bin_log = math.log(IOI_MIN_S) + IOI_STEP * np.arange(n_bins)
    n_periods = int(math.log(max_bpm / min_bpm) / IOI_STEP) + 1
    periods = (60.0 / max_bpm) * np.exp(IOI_STEP * np.arange(n_periods))
    # comb[p, b]: how much an interval in bin b supports beat period p (Gaussian around k * p).
    # Rows are normalised by the teeth that fit in the histogram, so slow tempos are not
    # penalised for their long multiples falling off its end.
    comb = np.zeros((n_periods, n_bins))
    teeth = np.zeros(n_periods)
    for k, weight in enumerate(COMB, start=1):
        fits = k * periods <= IOI_MAX_S
        centre = np.log(k * periods)[:, None]
        comb += weight * fits[:, None] * np.exp(-0.5 * ((bin_log[None, :] - centre) / COMB_SIGMA) ** 2)
        teeth += weight * fits
    prior = np.exp(-0.5 * (np.log2(60.0 / periods / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    return bin_log, periods, comb / teeth[:, None], prior


class _IoiSalience:
    """Decaying histogram of inter-onset intervals and the comb that turns it into a score per period."""

    def __init__(self, min_bpm: float, max_bpm: float):
        self.bin_log, self.periods, self.comb, self.prior = _comb_for(min_bpm, max_bpm)
        self.hist = np.zeros(self.bin_log.size)
        self.updated_s = 0.0

    def contribution(self, intervals: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Histogram of these intervals (to be scaled by the new onset's strength and added)."""
        bins = np.rint((np.log(intervals) - self.bin_log[0]) / IOI_STEP).astype(np.int64)
        keep = (bins >= 0) & (bins < self.hist.size)
        return np.bincount(bins[keep], weights=weights[keep], minlength=self.hist.size)

    def add(self, t_s: float, contribution: np.ndarray, scale: float) -> None:
        self.hist *= math.exp(-(t_s - self.updated_s) / HIST_DECAY_S)
        self.updated_s = t_s
        self.hist += scale * contribution

    def scores(self) -> np.ndarray:
        """Prior-weighted salience of every candidate period."""
        return (self.comb @ self.hist) * self.prior

    def score_of(self, scores: np.ndarray, period_s: float) -> float:
        """The score at an arbitrary period (nearest candidate)."""
        i = int(round(math.log(period_s / self.periods[0]) / IOI_STEP))
        return float(scores[min(max(i, 0), scores.size - 1)])

    def refined_period(self, scores: np.ndarray, i: int) -> float:
        """Parabolic interpolation of the peak at index i on the log-period axis."""
        if 0 < i < scores.size - 1:
            a, b, c = scores[i - 1], scores[i], scores[i + 1]
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
            return float(self.periods[i] * math.exp(IOI_STEP * max(-0.5, min(0.5, shift))))
        return float(self.periods[i])


class BeatTracker:
    """Online and causal: onsets in time order in, a beat grid out.

    onset() does the work (a few hundred µs at most); estimate() is a few float operations."""

    def __init__(self, initial_bpm: float = 120.0, min_bpm: float = 50.0, max_bpm: float = 260.0):
        if not 0 < min_bpm < max_bpm:
            raise ValueError("need 0 < min_bpm < max_bpm")
        self.initial_bpm = float(initial_bpm)
        self.min_bpm, self.max_bpm = float(min_bpm), float(max_bpm)
        self.reset()

    # -- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        self._salience = _IoiSalience(self.min_bpm, self.max_bpm)
        self._times = np.zeros(HISTORY)        # ring buffer of recent onsets
        self._strengths = np.zeros(HISTORY)
        self._count = 0                         # onsets (chords count once) so far
        self._group_s = 0.0                     # first note of the latest chord
        self._group_intervals = np.zeros(0)     # its histogram contribution per unit strength
        self._period_s = 60.0 / self.initial_bpm
        self._anchor_s = 0.0                    # a beat of the grid
        self._locked_beats = 0.0                # evidence that the grid is right, in beats (0 = guess)
        self._fit = 1.0                         # grid's tempo and phase scores over the best ones
        self._tempo_fit = 1.0
        self._last_hit_s: float | None = None   # last onset that locked the phase
        self._challenger: float | None = None
        self._challenger_runs = 0
        self._phase_runs = 0
        self._override = False
        self._override_phase = False

    def set_tempo(self, tempo_bpm: float, beat_s: float | None = None) -> None:
        """External tempo (MIDI clock, tap tempo): fixed until clear_override(); phase too if beat_s given."""
        self._period_s = 60.0 / float(tempo_bpm)
        if beat_s is not None:
            self._anchor_s = float(beat_s)
        self._override = True
        self._override_phase = beat_s is not None

    def clear_override(self) -> None:
        """Back to tracking, starting from the override's grid."""
        self._override = self._override_phase = False
        self._challenger, self._challenger_runs = None, 0

    # -- input -----------------------------------------------------------------------------------

    def onset(self, t_s: float, velocity: int = 64, pitch: int | None = None) -> None:
        strength = 0.3 + velocity / 127.0
        if pitch is not None and pitch < BASS_PITCH:
            strength *= BASS_WEIGHT
        if self._count and t_s - self._group_s <= CHORD_S:
            # another note of the same chord: a stronger onset. The histogram is linear in the
            # strengths, so the chord's intervals are simply added once more at this note's share.
            self._strengths[(self._count - 1) % HISTORY] += strength
            self._salience.hist += strength * self._group_intervals
            return
        if self._count == 0 and not self._override_phase:
            self._anchor_s = t_s  # like a count-in: the first note is a beat
        self._group_s = t_s
        self._remember(t_s, strength)
        self._lock_phase(t_s, strength)
        if self._count >= 4:
            if not self._override:
                self._induce_tempo(t_s)
            if not self._override_phase:
                self._check_phase(t_s)

    def estimate(self, t_s: float) -> BeatEstimate:
        confidence = 1.0 if self._override else self._confidence(t_s)
        return grid_estimate(self._anchor_s, self._period_s, t_s, confidence)

    # -- internals -------------------------------------------------------------------------------

    def _confidence(self, t_s: float) -> float:
        """Beats locked so far (up to 8) times how well the grid explains the recent onsets,
        fading once the music has been silent for a bar."""
        silent_beats = (t_s - self._group_s) / self._period_s - 4.0 if self._count else 0.0
        fade = 0.5 ** (silent_beats / 8.0) if silent_beats > 0 else 1.0
        return min(1.0, self._locked_beats / 8.0) * self._fit * fade

    def _lock_phase(self, t_s: float, strength: float) -> None:
        """PLL step: an onset near a predicted beat pulls the grid (phase, and period) towards it."""
        if self._override_phase:
            return
        period = self._period_s
        n = round((t_s - self._anchor_s) / period)
        beat = self._anchor_s + n * period
        error = t_s - beat
        if abs(error) > PHASE_WINDOW * period:
            return  # an off-beat: syncopation or a subdivision
        gain = min(1.0, strength / 1.5)
        self._anchor_s = beat + PHASE_GAIN * gain * error
        if not self._override and self._last_hit_s is not None:
            # error accumulated over the beats since the last hit says how far off the period is
            beats = max(1.0, round((t_s - self._last_hit_s) / period))
            step = PERIOD_GAIN * gain * error / beats
            self._period_s = min(max(period + step, 60.0 / self.max_bpm), 60.0 / self.min_bpm)
        if self._last_hit_s is not None:
            self._locked_beats += min(1.0, (t_s - self._last_hit_s) / period)
        self._last_hit_s = t_s

    def _remember(self, t_s: float, strength: float) -> None:
        """Pair the new onset with the remembered ones into the histogram, then remember it."""
        filled = min(self._count, HISTORY)
        intervals = t_s - self._times[:filled]
        near = intervals <= IOI_MAX_S
        weights = self._strengths[:filled][near] * np.exp(-intervals[near] / LAG_DECAY_S)
        self._group_intervals = self._salience.contribution(intervals[near], weights)
        self._salience.add(t_s, self._group_intervals, strength)
        slot = self._count % HISTORY
        self._times[slot], self._strengths[slot] = t_s, strength
        self._count += 1

    def _induce_tempo(self, t_s: float) -> None:
        """Compare the grid's period with the histogram's favourite; jump when it keeps losing."""
        scores = self._salience.scores()
        best = int(np.argmax(scores))
        if scores[best] <= 0:
            return
        candidate = self._salience.refined_period(scores, best)
        current = self._salience.score_of(scores, self._period_s)
        self._tempo_fit = min(1.0, current / scores[best])
        if abs(math.log(candidate / self._period_s)) < math.log(1 + AGREE):
            self._challenger, self._challenger_runs = None, 0
            self._tempo_fit = 1.0
            return
        if current * SWITCH_RATIO > scores[best]:
            self._challenger, self._challenger_runs = None, 0
            return
        if self._challenger is not None and abs(math.log(candidate / self._challenger)) < math.log(1 + AGREE):
            self._challenger_runs += 1
        else:
            self._challenger, self._challenger_runs = candidate, 1
        runs_needed = 1 if scores[best] > FAST_SWITCH_RATIO * current else SWITCH_AFTER
        if self._challenger_runs >= runs_needed or self._locked_beats < 2:
            self._switch_to(candidate, t_s)

    def _recent(self, t_s: float, beats: float, period_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Remembered onsets of the last few beats, weighted by strength and recency."""
        filled = min(self._count, HISTORY)
        times, strengths = self._times[:filled], self._strengths[:filled]
        recent = times > t_s - beats * period_s
        ages = (t_s - times[recent]) / period_s
        return times[recent], strengths[recent] * np.exp(-ages / (0.5 * beats))

    def _phase_scores(self, period_s: float, t_s: float) -> np.ndarray:
        """How much onset strength sits on each of PHASES candidate beat phases (phase 0 = t_s).

        A narrow bump around each onset, not a circular mean: swung off-beats and anticipations
        must not drag the beat towards them."""
        times, weights = self._recent(t_s, PHASE_MEMORY, period_s)
        angles = 2 * np.pi * (times - t_s) / period_s
        return np.exp(PHASE_SHARPNESS * (np.cos(angles[None, :] - _PHASE_ANGLES[:, None]) - 1)) @ weights

    def _check_phase(self, t_s: float) -> None:
        """The PLL can settle on the off-beat (it only listens near its own beats): when the recent
        onsets keep saying the beat is elsewhere, move the grid there."""
        scores = self._phase_scores(self._period_s, t_s)
        best = int(np.argmax(scores))
        grid_phase = ((self._anchor_s - t_s) / self._period_s) % 1.0
        ours = int(round(grid_phase * PHASES)) % PHASES
        shift = ((best / PHASES - grid_phase + 0.5) % 1.0 - 0.5) * self._period_s
        self._fit = self._tempo_fit * (1.0 if abs(shift) <= PHASE_WINDOW * self._period_s
                                       else min(1.0, scores[ours] / scores[best]))
        if abs(shift) <= PHASE_WINDOW * self._period_s or scores[best] < PHASE_SWITCH_RATIO * scores[ours]:
            self._phase_runs = 0
            return
        self._phase_runs += 1
        if self._phase_runs >= SWITCH_AFTER:
            self._phase_runs = 0
            self._fit_grid(self._period_s, self._anchor_s + shift, t_s)

    def _switch_to(self, period_s: float, t_s: float) -> None:
        """New period. Phase: keep the beat the loop last locked onto unless the recent onsets pile
        up clearly elsewhere (the same hysteresis as _check_phase)."""
        scores = self._phase_scores(period_s, t_s)
        best = int(np.argmax(scores))
        kept = self._last_hit_s if self._last_hit_s is not None else self._anchor_s
        kept_phase = ((kept - t_s) / period_s) % 1.0
        around = [int(round(kept_phase * PHASES)) % PHASES + d for d in (-1, 0, 1)]
        kept_score = max(scores[i % PHASES] for i in around)
        phase = kept_phase if kept_score * PHASE_SWITCH_RATIO >= scores[best] else best / PHASES
        self._fit_grid(period_s, t_s + phase * period_s, t_s)
        self._challenger, self._challenger_runs = None, 0
        self._locked_beats = min(self._locked_beats, 2.0)

    def _fit_grid(self, period_s: float, beat_s: float, t_s: float) -> None:
        """Least-squares line through the recent onsets that fall near beats of the rough grid
        (period_s, beat_s): a precise period and phase to hand over to the PLL."""
        times, weights = self._recent(t_s, FIT_BEATS, period_s)
        index = np.rint((times - beat_s) / period_s)
        near = np.abs(times - beat_s - index * period_s) <= PHASE_WINDOW * period_s
        if near.sum() >= 3 and np.ptp(index[near]) >= 2:
            w, n, y = weights[near], index[near], times[near]
            n_mean, y_mean = (w @ n) / w.sum(), (w @ y) / w.sum()
            slope = (w @ ((n - n_mean) * (y - y_mean))) / (w @ ((n - n_mean) ** 2))
            if abs(math.log(slope / period_s)) < 2 * AGREE:
                period_s, beat_s = float(slope), float(y_mean - slope * n_mean)
        self._period_s = min(max(period_s, 60.0 / self.max_bpm), 60.0 / self.min_bpm)
        self._anchor_s = beat_s
        self._last_hit_s = None
