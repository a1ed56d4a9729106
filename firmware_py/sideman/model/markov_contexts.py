"""What the Markov voice conditions on: the per-event features, the context keys built from them,
and the contexts and smoothing of each factor (default_spec). The model (markov.py), its sampler
(markov_sampling.py) and the offline fit (sideman_train.markov_fit) all build their keys here, so
scoring, sampling, live learning and training see the very same contexts.

A context is a list of (feature, lag) words, e.g. "tok1 tok2 tclass0": the previous two pitch
tokens and the onset class of the event being predicted. Its key packs the features' small
integers into one int64 (all ones = START, "before the sequence began").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sideman.model.events import (DURATION_BINS_S, PEDAL_DOWN, PEDAL_UP, PITCH_TOKENS, TIME_BINS_S,
                                  VELOCITY_BINS)

N_TIME = len(TIME_BINS_S)
N_DURATION = len(DURATION_BINS_S)
N_INTERVAL = 257  # intervals -127..+127 (index + 127), then pedal down, pedal up
INTERVAL_DOWN, INTERVAL_UP = 255, 256

# How many previous events the "harmony" context (pitch classes around the last note) looks at.
HARMONY_WINDOW = 8

FIELDS = ("time", "pitch", "duration", "velocity")


# ---------------------------------------------------------------------------------------------
# Features: small integers derived per event, from which context keys are built.

def _tclass(time_bin):
    """Coarse onset gap: 0 together (chord, < 5 ms), 1 spread chord (< 40 ms), 2 a line, 3 a gap."""
    return (time_bin > 0).astype(np.int64) + (time_bin > 3) + (time_bin > 12) if isinstance(
        time_bin, np.ndarray) else int(time_bin > 0) + int(time_bin > 3) + int(time_bin > 12)


def _register(token):
    """Octave of a note (0..10); pedal down 11, pedal up 12."""
    if isinstance(token, np.ndarray):
        return np.where(token < 128, token // 12, token - 117)
    return token // 12 if token < 128 else token - 117


def _interval(token, prev_pitch):
    """Interval token: the step from the previous note (+127), or the pedal codes."""
    if isinstance(token, np.ndarray):
        return np.where(token == PEDAL_DOWN, INTERVAL_DOWN,
                        np.where(token == PEDAL_UP, INTERVAL_UP, token - prev_pitch + 127))
    if token >= 128:
        return INTERVAL_DOWN if token == PEDAL_DOWN else INTERVAL_UP
    return token - prev_pitch + 127


def _pedal_coded(values, token, width):
    """Duration/velocity as a context value: pedal events get their own codes (width, width+1)."""
    if isinstance(token, np.ndarray):
        return np.where(token < 128, values, token - 128 + width)
    return values if token < 128 else token - 128 + width


def features(seq: np.ndarray, ref_pitch: int) -> dict[str, np.ndarray]:
    """Per-event feature columns of an (N, 4) encoded sequence. ref_pitch: the last note before it."""
    if not len(seq):
        return {name: np.zeros(0, np.int64) for name in NEEDS}
    t, tok, dur, vel = seq[:, 0], seq[:, 1], seq[:, 2], seq[:, 3]
    is_note = tok < 128
    # The last note strictly before each event (the reference for its interval).
    last = np.where(is_note, np.arange(len(tok)), -1)
    np.maximum.accumulate(last, out=last)
    before = np.concatenate(([-1], last[:-1]))
    prev = np.where(before >= 0, tok[np.maximum(before, 0)], ref_pitch)
    n = len(tok)
    pcs = np.zeros(n, dtype=np.int64)
    for lag in range(1, HARMONY_WINDOW + 1):
        lagged = np.concatenate((np.full(min(lag, n), 200), tok[:max(0, n - lag)]))
        bit = np.where(lagged < 128, np.left_shift(1, (lagged - prev) % 12), 0)
        pcs |= bit
    return {
        "harmony": pcs,
        "time": t,
        "tclass": _tclass(t),
        "tok": tok,
        "prev": prev,
        "interval": _interval(tok, prev),
        "reg": _register(tok),
        "dur": _pedal_coded(dur, tok, N_DURATION),
        "vel": _pedal_coded(vel, tok, VELOCITY_BINS),
    }


def current_feature(name: str, row: Sequence[int], prev_pitch: int) -> int:
    """One feature of the event being chosen (lag 0), from the fields chosen so far."""
    t, tok, dur, vel = row
    if name == "time":
        return t
    if name == "tclass":
        return _tclass(t)
    if name == "tok":
        return tok
    if name == "prev":
        return prev_pitch
    if name == "interval":
        return _interval(tok, prev_pitch)
    if name == "reg":
        return _register(tok)
    if name == "dur":
        return _pedal_coded(dur, tok, N_DURATION)
    if name == "vel":
        return _pedal_coded(vel, tok, VELOCITY_BINS)
    raise KeyError(name)


# Per feature: bits in a context key (all ones = START, "before the sequence began"), and which
# field of the current event it needs at lag 0 (-1: the history alone; a factor may only use
# fields chosen before it).
FEATURES = {"time": (5, 0), "tclass": (3, 0), "tok": (8, 1), "interval": (9, 1), "reg": (4, 1),
             "dur": (5, 2), "vel": (5, 3), "prev": (8, -1), "harmony": (13, -1)}
NEEDS = {name: needs for name, (_bits, needs) in FEATURES.items()}
KEY_BITS_MAX = 63


def start_value(name: str) -> int:
    return (1 << FEATURES[name][0]) - 1


def parse_level(text: str) -> tuple[tuple[str, int], ...]:
    """'tok1 tok2 tclass0' -> (('tok', 1), ('tok', 2), ('tclass', 0))."""
    out = []
    for word in text.split():
        name = word.rstrip("0123456789")
        if name not in FEATURES or name == word:
            raise ValueError(f"bad context feature {word!r}")
        out.append((name, int(word[len(name):])))
    if sum(FEATURES[name][0] for name, _lag in out) > KEY_BITS_MAX:
        raise ValueError(f"context {text!r} does not fit a 63-bit key")
    return tuple(out)


def level_keys(level: tuple[tuple[str, int], ...], feats: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Context key of every position for one level (vectorised)."""
    key = np.zeros(n, dtype=np.int64)
    shift = 0
    for name, lag in level:
        column = feats[name]
        if lag:
            column = np.concatenate((np.full(min(lag, n), start_value(name), dtype=np.int64), column[:max(0, n - lag)]))
        key |= column.astype(np.int64) << shift
        shift += FEATURES[name][0]
    return key


# ---------------------------------------------------------------------------------------------
# Contexts and smoothing: what each factor conditions on.

def default_spec(max_order: int = 5) -> dict:
    """The contexts and smoothing chosen on held-out training files (see the model card)."""
    tokens = [" ".join(f"tok{k}" for k in range(1, n + 1)) for n in range(1, max_order + 1)]
    intervals = [" ".join(f"interval{k}" for k in range(1, n + 1)) for n in range(1, max_order + 1)]
    harmony = "harmony0 tclass0"
    return {
        "time": ["", "time1", "time1 dur1", "time1 dur1 time2", "time1 dur1 time2 dur2",
                 "time1 dur1 time2 dur2 time3"],
        "pitch": [""] + [f"tclass0 {t}" for t in tokens],
        "interval": ["", harmony] + [f"{harmony} {i}" for i in intervals],
        "duration": ["", "reg0", "reg0 time0", "reg0 time0 dur1", "reg0 time0 dur1 dur2"],
        "velocity": ["", "vel1", "vel1 vel2", "vel1 vel2 reg0", "vel1 vel2 reg0 tclass0"],
        "discount": 0.7, "beta": 3.0, "theta": 0.0,  # smoothing of every family
        "interval_share": 0.6,                       # pitch = (1-s)·absolute view + s·interval view
        "register_power": 0.5,                       # interval view × absolute unigram^power
        "min_count": 2, "prune_from": 3,             # drop contexts seen once in levels 3 and up
    }


FAMILIES = {  # family -> (target feature, alphabet size, which rows count)
    "time": ("time", N_TIME, "all"),
    "pitch": ("tok", PITCH_TOKENS, "all"),
    "interval": ("interval", N_INTERVAL, "all"),
    "duration": ("dur", N_DURATION, "notes"),
    "velocity": ("vel", VELOCITY_BINS, "notes"),
}
_FIELD_OF_FAMILY = {"time": 0, "pitch": 1, "interval": 1, "duration": 2, "velocity": 3}


def check_spec(spec: dict) -> None:
    for family in FAMILIES:
        for text in spec[family]:
            for name, lag in parse_level(text):
                if lag == 0 and NEEDS[name] >= _FIELD_OF_FAMILY[family]:
                    raise ValueError(f"{family} context {text!r} uses {name} of the event it predicts")


_LIMITS = np.array([N_TIME, PITCH_TOKENS, N_DURATION, VELOCITY_BINS])


def as_array(encoded) -> np.ndarray:
    """(N, 4) int64 array of encoded events; ValueError if a field is out of its range."""
    if len(encoded) == 0:
        return np.zeros((0, 4), np.int64)
    seq = np.asarray(encoded, dtype=np.int64).reshape(-1, 4)
    if (seq.min(axis=0) < 0).any() or (seq.max(axis=0) >= _LIMITS).any():
        raise ValueError("encoded events out of range (time, pitch token, duration, velocity bins)")
    return seq

