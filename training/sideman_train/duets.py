"""Solo performances into duet training windows.

The corpus holds one pianist at a time. A window of it becomes a duet by giving each event a voice
(relabel): who plays it, the human or the AI, according to the mode the model is asked to play
(sideman.model.conditioning.MODEL_MODES). The model predicts every event: the AI's events are what
it plays (loss_mask, the loss and every bits/event figure); the human's events (human_mask, a
smaller weight in training) teach it when the player is likely to play again, which the partner
reads as "has this phrase ended". A *listening* window is an answer-mode window whose events are
all the human's: a soloist's whole line with its breaths and phrase ends, heard by a partner who
waits.

Windows are exactly `length` events, never padded: WindowSampler draws only from performances with
at least `length` events (in PiJAMA, all but a handful of very short ones at length 256), so a batch
has no padding mask and every position is real. The first event of a performance has time bin 0;
any other window passes the onset of the event before it (prev_onset_s), so its first time bin is
the real gap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sideman.model.conditioning import MODEL_MODES, chord_profiles, mode_index, pulse_features
from sideman.model.events import AI, HUMAN, PEDAL_DOWN, duration_bins, time_bins, velocity_bins

PHRASE_GAP_S = 0.35        # answer mode: an onset gap this long starts a new phrase ...
PHRASE_MAX_S = 8.0         # ... and so does a phrase running this long
SPLIT_RANGE = (55, 65)     # comp / duet: the register split, drawn per window (both ends included)
PIANO_RANGE = (21, 108)    # augmentation keeps notes on the keyboard
DEFAULT_SPLIT = 60         # (without an rng: middle C)
AUGMENT_DEFAULTS = {"transpose": (-5, 6), "stretch": (0.9, 1.1), "velocity_jitter": 4.0}
WINDOW_KEYS = ("onset_s", "pitch", "duration_s", "velocity", "bpm", "beat_phase", "beat_confidence")
PULSE_KEYS = ("bpm", "beat_phase", "beat_confidence")   # known after each event: shifted by one


def cut_window(arrays, a: int, b: int, first_in_performance: bool) -> dict:
    """Events [a, b) of `arrays` (a mapping or an object with WINDOW_KEYS arrays) as a window, with
    what the event before it left behind: its onset (prev_onset_s, the first time gap) and the
    tracker's pulse after it (prev_bpm, prev_beat_phase, prev_beat_confidence). A performance's first
    event has none of them."""
    get = arrays.get if isinstance(arrays, dict) else lambda key: getattr(arrays, key, None)
    window = {key: np.asarray(get(key))[a:b] for key in WINDOW_KEYS if get(key) is not None}
    before = None if first_in_performance else a - 1
    window["prev_onset_s"] = None if before is None else float(get("onset_s")[before])
    for key in PULSE_KEYS:
        if key in window:   # (arrays read without a beat tracker have none: no grid)
            window[f"prev_{key}"] = np.nan if before is None else float(get(key)[before])
    return window


def _phrases(onset: np.ndarray, is_note: np.ndarray) -> np.ndarray:
    """Phrase number of every event: a new phrase at a note whose onset is PHRASE_GAP_S or more
    after the previous note's, or PHRASE_MAX_S or more after its phrase's first note. Pedal events
    belong to the phrase of the note before them (the first phrase before any note)."""
    n = onset.size
    notes = np.nonzero(is_note)[0]
    phrase_of_note = np.zeros(notes.size, dtype=np.int64)
    if notes.size:
        t = onset[notes]
        gap_start = np.concatenate([[False], np.diff(t) >= PHRASE_GAP_S])
        starts = np.nonzero(gap_start)[0].tolist() + [notes.size]
        # Between gap boundaries, cut every PHRASE_MAX_S from each sub-phrase's first note.
        breaks = np.zeros(notes.size, dtype=bool)
        begin = 0
        for end in starts:
            first = begin
            while True:
                cut = np.searchsorted(t[first:end], t[first] + PHRASE_MAX_S, side="left") + first
                if cut >= end:
                    break
                breaks[cut] = True
                first = cut
            begin = end
        breaks |= gap_start
        phrase_of_note = np.cumsum(breaks)
    out = np.zeros(n, dtype=np.int64)
    # each event takes the phrase of the last note at or before it in the sequence
    last_note = np.searchsorted(notes, np.arange(n), side="right") - 1
    has = last_note >= 0
    out[has] = phrase_of_note[last_note[has]]
    return out


def register_split(rng: np.random.Generator | None = None) -> int:
    """comp / duet: where the hands divide. Drawn per window, never from the window's own notes: a
    split taken from the window (its median) would let later notes decide earlier events' voices,
    which the live box cannot know."""
    if rng is None:
        return DEFAULT_SPLIT
    return int(rng.integers(SPLIT_RANGE[0], SPLIT_RANGE[1] + 1))


def relabel(onset_s, pitch, mode: str | int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Voice (uint8, HUMAN=0 / AI=1) of every event of a window for a mode (name or index).

    solo: all AI. answer: phrases (onset gaps >= 0.35 s, or 8 s long) alternate human / AI, starting
    with a random voice (HUMAN without rng). comp: notes below the register split are the AI's, the
    rest and the pedal the human's. duet: notes at or above the split are the AI's, the rest and the
    pedal the human's. The split is register_split(rng)."""
    onset = np.asarray(onset_s, dtype=np.float64)
    pitch = np.asarray(pitch)
    mode = MODEL_MODES[mode_index(mode)]
    is_note = pitch < PEDAL_DOWN
    if mode == "solo":
        return np.full(onset.size, AI, dtype=np.uint8)
    if mode == "answer":
        first = int(rng.integers(2)) if rng is not None else HUMAN
        return ((_phrases(onset, is_note) + first) % 2).astype(np.uint8)
    split = register_split(rng)
    ai = is_note & ((pitch < split) if mode == "comp" else (pitch >= split))
    return np.where(ai, AI, HUMAN).astype(np.uint8)


def augment(window: dict, rng: np.random.Generator, transpose: tuple[int, int] | None = (-5, 6),
            stretch: tuple[float, float] | None = (0.9, 1.1),
            velocity_jitter: float | None = 4.0) -> dict:
    """A new window: notes transposed by a random whole number of semitones in [lo, hi] (limited so
    every note stays in 21..108; pedal tokens untouched), time stretched by s in [lo, hi) (onsets,
    the previous onset and durations x s, bpm / s), velocities + N(0, jitter) rounded and clipped
    to 1..127 (pedal stays 0). None turns one off."""
    out = dict(window)
    pitch = np.asarray(window["pitch"])
    is_note = pitch < PEDAL_DOWN
    if transpose is not None and is_note.any():
        notes = pitch[is_note]
        lo = max(int(transpose[0]), PIANO_RANGE[0] - int(notes.min()))
        hi = min(int(transpose[1]), PIANO_RANGE[1] - int(notes.max()))
        shift = int(rng.integers(lo, hi + 1)) if lo <= hi else 0
        if shift:
            out["pitch"] = np.where(is_note, pitch + shift, pitch).astype(pitch.dtype)
    if stretch is not None:
        s = float(rng.uniform(stretch[0], stretch[1]))
        out["onset_s"] = np.asarray(window["onset_s"], dtype=np.float64) * s
        out["duration_s"] = (np.asarray(window["duration_s"]) * s).astype(np.float32)
        out["bpm"] = (np.asarray(window["bpm"]) / s).astype(np.float32)
        if window.get("prev_onset_s") is not None:
            out["prev_onset_s"] = float(window["prev_onset_s"]) * s
        if window.get("prev_bpm") is not None:
            out["prev_bpm"] = float(window["prev_bpm"]) / s
    if velocity_jitter:
        v = np.asarray(window["velocity"]).astype(np.float64)
        jittered = np.clip(np.rint(v + rng.normal(0.0, velocity_jitter, v.shape)), 1, 127)
        out["velocity"] = np.where(is_note, jittered, 0).astype(np.uint8)
    return out


def make_example(window: dict, mode_index_: int | str, rng: np.random.Generator | None = None,
                 augment_cfg: dict | None = None, listening: bool = False) -> dict[str, np.ndarray]:
    """One training example from a window (cut_window: WINDOW_KEYS arrays plus the prev_ values of
    the event before it, None / nan for a performance's start).

    augment_cfg: keyword arguments of augment (needs rng); None: no augmentation.
    listening: every event is the human's, in answer mode (mode_index_ is then ignored).
    Returns time, pitch, duration, velocity, voice (int64 (T,)), chord (float32 (T, 12)),
    pulse (float32 (T, PULSE_DIM)), loss_mask (bool (T,), the AI's events), human_mask (bool (T,),
    the human's), mode (int64 scalar)."""
    if augment_cfg is not None and rng is not None:
        window = augment(window, rng, **augment_cfg)
    onset = np.asarray(window["onset_s"], dtype=np.float64)
    pitch = np.asarray(window["pitch"]).astype(np.int64)
    is_note = pitch < PEDAL_DOWN
    if listening:
        m = MODEL_MODES.index("answer")
        voice = np.full(onset.size, HUMAN, dtype=np.int64)
    else:
        m = mode_index(mode_index_)
        voice = relabel(onset, pitch, m, rng).astype(np.int64)
    previous = window.get("prev_onset_s")
    gaps = np.diff(onset, prepend=onset[:1])
    if onset.size and previous is not None and np.isfinite(previous):
        gaps[0] = onset[0] - float(previous)
    return {
        "time": time_bins(gaps),
        "pitch": pitch,
        "duration": np.where(is_note, duration_bins(window["duration_s"]), 0),
        "velocity": np.where(is_note, velocity_bins(window["velocity"]), 0),
        "voice": voice,
        "chord": chord_profiles(onset, pitch, voice),
        # the pulse after event i is the tracker's estimate then; the model may only know the one before it.
        "pulse": pulse_features(*(np.concatenate([[window.get(f"prev_{key}", np.nan)],
                                                  np.asarray(window.get(key, np.full(onset.size, np.nan)))[:-1]])
                                  for key in PULSE_KEYS)),   # a window without beat arrays: no grid
        "loss_mask": voice == AI,
        "human_mask": voice == HUMAN,
        "mode": np.int64(m),
    }


class WindowSampler:
    """Random training windows of one cache split.

    A window is drawn with probability proportional to its performance's events x perf_weight
    (then a uniform start), its mode from mode_probs (over MODEL_MODES; default uniform).
    Performances shorter than `length` events are never drawn (no padding). A share
    `listening` of the windows are listening windows (make_example)."""

    def __init__(self, split, perf_style, length: int, rng: np.random.Generator,
                 perf_weight=None, mode_probs: Sequence[float] | None = None,
                 augment_cfg: dict | None = None, listening: float = 0.0):
        self.split, self.length, self.rng = split, int(length), rng
        self.augment_cfg = augment_cfg
        self.listening = float(listening)
        n = np.diff(np.asarray(split.offsets)).astype(np.int64)
        self.perf_style = np.asarray(perf_style, dtype=np.int64)
        if self.perf_style.shape != n.shape:
            raise ValueError(f"perf_style has {self.perf_style.size} entries for {n.size} performances")
        weight = np.ones(n.size) if perf_weight is None else np.asarray(perf_weight, dtype=np.float64)
        p = np.where(n >= self.length, n * weight, 0.0)
        if p.sum() <= 0:
            raise ValueError(f"no performance with at least {self.length} events (and weight > 0)")
        self.perf_probs = p / p.sum()
        probs = np.full(len(MODEL_MODES), 1.0) if mode_probs is None else np.asarray(mode_probs, dtype=np.float64)
        if probs.shape != (len(MODEL_MODES),) or probs.min() < 0 or probs.sum() <= 0:
            raise ValueError(f"mode_probs: {len(MODEL_MODES)} non-negative weights for {MODEL_MODES}")
        self.mode_probs = probs / probs.sum()
        self._n = n
        self._cdf = np.cumsum(self.perf_probs)

    def window(self, perf: int, start: int) -> dict:
        """The raw window of `length` events of performance perf from start (plus prev_onset_s)."""
        a = int(self.split.offsets[perf]) + start
        return cut_window(self.split, a, a + self.length, first_in_performance=start == 0)

    def batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """batch_size examples stacked (keys of make_example, plus style int64 (B,))."""
        rng = self.rng
        perfs = np.minimum(np.searchsorted(self._cdf, rng.random(batch_size) * self._cdf[-1], side="right"),
                           len(self._n) - 1)
        modes = rng.choice(len(MODEL_MODES), size=batch_size, p=self.mode_probs)
        listening = rng.random(batch_size) < self.listening
        examples = []
        for perf, m, listen in zip(perfs.tolist(), modes.tolist(), listening.tolist()):
            start = int(rng.integers(0, self._n[perf] - self.length + 1))
            examples.append(make_example(self.window(perf, start), m, rng, self.augment_cfg, listening=listen))
        out = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
        out["style"] = self.perf_style[perfs]
        return out


def scoring_windows(n_events: int, length: int, stride: int) -> list[tuple[int, int]]:
    """(start, score_from) of sliding windows over a whole performance: window k covers
    [start, min(start + length, n_events)) and scores [score_from, its end). Every event is scored
    exactly once, each with at least length - stride events of context before it in its window
    (except in the first window, which scores from 0)."""
    if length <= 0 or not 0 < stride <= length:
        raise ValueError("need length > 0 and 0 < stride <= length")
    if n_events <= 0:
        return []
    windows = [(0, 0)]
    end = min(length, n_events)
    while end < n_events:
        new_end = min(end + stride, n_events)
        windows.append((max(0, new_end - length), end))
        end = new_end
    return windows
