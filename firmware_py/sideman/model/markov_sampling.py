"""Sampling the Markov voice: the next event after a history, field by field in the factorisation's
order (time, pitch, then duration and velocity for a note), each drawn from the same smoothed
distributions scoring uses (markov.py), mixed over a blend's models, tempered, and steered by the
caller's pitch and time weights (register limits, chord bending, density)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sideman.model.events import PEDAL_DOWN, PITCH_TOKENS, EncodedEvent
from sideman.model.markov_contexts import (FEATURES, HARMONY_WINDOW, N_TIME, NEEDS, as_array, current_feature,
                                           features, start_value)


class Cursor:
    """The context of the next event after `history`, for one model: keys are built field by field
    as the event's fields are chosen (features of the history are computed once)."""

    def __init__(self, model, history):   # model: a markov.MarkovModel (not imported: markov.py imports this)
        look = max(model.max_lag, HARMONY_WINDOW)
        tail = list(history[-look:]) if len(history) else []
        # The last note before the tail: the interval reference of the tail's first events.
        ref = 60
        for i in range(len(history) - len(tail) - 1, max(-1, len(history) - len(tail) - 65), -1):
            if history[i][1] < 128:
                ref = int(history[i][1])
                break
        # A placeholder row stands for the event being chosen: its history-only features are real.
        self.feats = features(as_array(tail + [(0, 0, 0, 0)]), ref)
        self.n = len(tail)
        self.prev_pitch = int(self.feats["prev"][-1])
        self.model = model

    def keys(self, family: str, row: Sequence[int]) -> list[int]:
        out = []
        for level in self.model.families[family].levels:
            key = shift = 0
            for name, lag in level.spec:
                if lag == 0:
                    value = (int(self.feats[name][self.n]) if NEEDS[name] < 0
                             else current_feature(name, row, self.prev_pitch))
                elif lag <= self.n:
                    value = int(self.feats[name][self.n - lag])
                else:
                    value = start_value(name)
                key |= value << shift
                shift += FEATURES[name][0]
            out.append(key)
        return out

    def distribution(self, field_name: str, row: Sequence[int]) -> np.ndarray:
        model = self.model
        if field_name == "pitch":
            absolute = model.families["pitch"].distribution(self.keys("pitch", row))
            share = model.spec["interval_share"]
            if share <= 0:
                return absolute
            intervals = model.families["interval"].distribution(self.keys("interval", row))
            return (1 - share) * absolute + share * model.interval_to_pitch(intervals[None, :],
                                                                            np.array([self.prev_pitch]))[0]
        return model.families[field_name].distribution(self.keys(field_name, row))


def _tempered(p: np.ndarray, temperature: float) -> np.ndarray:
    if not np.isfinite(temperature):
        temperature = 1.0
    if temperature <= 0:
        return (p == p.max()).astype(np.float64)   # greedy
    if temperature == 1.0:
        return p
    return np.power(p / p.max(), 1.0 / temperature)


def _steered(p: np.ndarray, temperature: float, weights: np.ndarray | None) -> np.ndarray:
    """Tempered probabilities times the caller's weights. If that leaves nothing (the weights only
    allow values a low temperature rounded to 0), the model's own odds among the allowed values;
    if the weights allow nothing at all, they are ignored."""
    q = _tempered(p, temperature)
    if weights is None:
        return q
    steered = q * weights
    if steered.sum() > 0:
        return steered
    allowed = p * (weights > 0)
    return allowed if allowed.sum() > 0 else q


def _clean_weights(weights, size: int, what: str) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (size,):
        raise ValueError(f"{what} must have {size} entries, got {w.shape[0]}")
    return np.where(np.isfinite(w) & (w > 0), w, 0.0)


def _draw(q: np.ndarray, rng: np.random.Generator) -> int:
    """One index drawn in proportion to q (q ≥ 0, not all 0): exactly one rng draw."""
    cumulative = np.cumsum(q)
    i = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    if i >= len(q) or q[i] <= 0:  # rounding at the very top: take the last value allowed
        i = int(np.flatnonzero(q > 0)[-1])
    return i


def sample(members, history, rng, temperature, pitch_weights, time_weights, allow_pedal) -> EncodedEvent:
    """The next event after `history` from [(model, weight)] (weights summing to 1), each field
    drawn with exactly one rng draw (see MarkovModel.sample for the steering arguments)."""
    history = history[-(max(m.max_lag for m, _ in members) + HARMONY_WINDOW + 64):]  # enough to find the last note
    cursors = [(Cursor(model, history), w) for model, w in members]

    def mixed(field_name, row):
        p = None
        for cursor, w in cursors:
            part = cursor.distribution(field_name, row) * w
            p = part if p is None else p + part
        return p

    row = [0, 0, 0, 0]
    # Time first: density steering multiplies the onset-gap bins.
    row[0] = _draw(_steered(mixed("time", row), temperature, _clean_weights(time_weights, N_TIME, "time_weights")),
                   rng)
    # Pitch: chord bending and register limits multiply the tokens; the pedal may be forbidden.
    allowed = np.ones(PITCH_TOKENS)
    if not allow_pedal:
        allowed[PEDAL_DOWN:] = 0.0
    weights = _clean_weights(pitch_weights, PITCH_TOKENS, "pitch_weights")
    p = mixed("pitch", row)
    q = _steered(p, temperature, allowed if weights is None else weights * allowed)
    if (q * allowed).sum() <= 0:  # the weights allowed only a forbidden pedal
        q = _steered(p, temperature, allowed)
    row[1] = _draw(q * allowed, rng)
    if row[1] >= 128:
        return (row[0], row[1], 0, 0)
    for field_name, column in (("duration", 2), ("velocity", 3)):
        row[column] = _draw(_steered(mixed(field_name, row), temperature, None), rng)
    return (row[0], row[1], row[2], row[3])

