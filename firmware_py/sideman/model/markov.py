"""The Markov voice: a Continuator-style variable-order Markov model over encoded events. It is the
voice that is always there (no GPU, tables load in a blink) and the baseline every later model must
beat, so it both *generates* (sample) and *scores* (bits per event, same codec as the transformer).

Factorisation. One event is (time bin, pitch token, duration bin, velocity bin). By the chain rule,
field by field in this order, each factor conditioned on the history and on the fields of this
event already chosen (so sampling and scoring are the same computation):

    P(event | history) =
        P(time     | previous 3 time bins, previous 2 durations)          legato vs. detached lines
      × P(pitch    | (1-s)·absolute view + s·interval view, s = 0.6)
      × P(duration | register, this onset gap, previous 2 durations)      notes only
      × P(velocity | previous 2 velocities, register, chord or line)      notes only

    absolute view: the previous ≤ max_order pitch tokens (pedal tokens included) and whether this
        onset is a chord tone, a spread chord, a line or after a gap (its time bin, chosen first).
    interval view: the steps between the previous ≤ max_order notes, the pitch classes of the last
        8 events relative to the last note (a transposable "harmony" context) and the same
        chord/line class; it predicts the step from the last note, mapped back onto the keyboard
        through a register prior (the absolute pitch unigram^0.5) and renormalised.

Pedal events (tokens 128 down, 129 up) always have duration and velocity 0: given the pedal token
those fields have probability 1 and cost no bits. bits/event = −log2 of the product.

Why: the corpus is in every key, so interval contexts generalise where absolute ones are sparse,
while absolute ones keep voicings and registers; their mix beats either alone and the harmony
context helps most (Mehldau val, bits/event: absolute only 13.61, interval only 13.55, mix 13.42,
mix with harmony 13.37; unigram 14.96). Pitch contexts beyond 2 notes barely change the val
figure; the longer ones (kept when seen twice) are what lets the voice quote phrases.

Every factor is a smoothed backoff family: a chain of contexts from the empty one (order 0) to the
most specific. Each level interpolates its counts with the level below — absolute discounting
(D = 0.7) plus a Witten–Bell share per seen symbol (β = 3), PPM-like — and the bottom level with a
uniform floor, so no event ever has probability 0 and rare long contexts help without being trusted
blindly. Contexts, D, β and s were chosen on 10 held-out training files, then checked on val.

Live learning: `learn()` adds the player's phrases to a separate live layer whose counts are added
to the corpus counts in every context (scaled by `weight`). Long contexts are rare in the corpus, so a
phrase just heard dominates there — the Continuator's "answer in your own words" — while the
corpus still carries the common ground. `clear_live()` forgets them.

Tables are stored as one compressed .npz: per level, sorted context keys (delta coded), row
lengths, symbols and counts, plus a JSON header (format version, contexts, smoothing, training
info, and the order-0 unigram counts that `markov-score` reports as the baseline).
"""

from __future__ import annotations

import io
import json
import time as _time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sideman.model.events import (DURATION_BINS_S, PEDAL_DOWN, PEDAL_UP, PITCH_TOKENS, TIME_BINS_S,
                                  VELOCITY_BINS, EncodedEvent)
from sideman.paths import models_dir, write_atomically

FORMAT = "sideman-markov"
FORMAT_VERSION = 1
DEFAULT_STYLE = "mehldau"
TABLE_SUFFIX = ".npz"

N_TIME = len(TIME_BINS_S)
N_DURATION = len(DURATION_BINS_S)
N_INTERVAL = 257  # intervals -127..+127 (index + 127), then pedal down, pedal up
INTERVAL_DOWN, INTERVAL_UP = 255, 256


# A live (player) event counts like this many corpus occurrences at weight 1.0 (2–4 were best at
# predicting the rest of a performance from its first half). The live layer keeps the most recent
# LIVE_MEMORY_EVENTS events: the tune being played (about 7 minutes at 5 notes/s). Each event
# costs ~2 kB of Python dicts, so the bound also keeps a long gig's memory flat: reached within
# about 15 minutes of playing, not after an hour.
LIVE_BOOST = 3.0
LIVE_MEMORY_EVENTS = 2_000
# How many previous events the "harmony" context (pitch classes around the last note) looks at.
HARMONY_WINDOW = 8

FIELDS = ("time", "pitch", "duration", "velocity")


class MarkovError(Exception):
    """A table that cannot be used: the message names the file and what is wrong."""


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


def _features(seq: np.ndarray, ref_pitch: int) -> dict[str, np.ndarray]:
    """Per-event feature columns of an (N, 4) encoded sequence. ref_pitch: the last note before it."""
    if not len(seq):
        return {name: np.zeros(0, np.int64) for name in _NEEDS}
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


def _current_feature(name: str, row: Sequence[int], prev_pitch: int) -> int:
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
_FEATURES = {"time": (5, 0), "tclass": (3, 0), "tok": (8, 1), "interval": (9, 1), "reg": (4, 1),
             "dur": (5, 2), "vel": (5, 3), "prev": (8, -1), "harmony": (13, -1)}
_NEEDS = {name: needs for name, (_bits, needs) in _FEATURES.items()}
KEY_BITS_MAX = 63


def _start(name: str) -> int:
    return (1 << _FEATURES[name][0]) - 1


def _parse_level(text: str) -> tuple[tuple[str, int], ...]:
    """'tok1 tok2 tclass0' -> (('tok', 1), ('tok', 2), ('tclass', 0))."""
    out = []
    for word in text.split():
        name = word.rstrip("0123456789")
        if name not in _FEATURES or name == word:
            raise ValueError(f"bad context feature {word!r}")
        out.append((name, int(word[len(name):])))
    if sum(_FEATURES[name][0] for name, _lag in out) > KEY_BITS_MAX:
        raise ValueError(f"context {text!r} does not fit a 63-bit key")
    return tuple(out)


def _level_keys(level: tuple[tuple[str, int], ...], feats: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Context key of every position for one level (vectorised)."""
    key = np.zeros(n, dtype=np.int64)
    shift = 0
    for name, lag in level:
        column = feats[name]
        if lag:
            column = np.concatenate((np.full(min(lag, n), _start(name), dtype=np.int64), column[:max(0, n - lag)]))
        key |= column.astype(np.int64) << shift
        shift += _FEATURES[name][0]
    return key


# ---------------------------------------------------------------------------------------------
# One smoothed backoff family (one field, or the interval view of pitch).

@dataclass
class _Level:
    spec: tuple[tuple[str, int], ...]
    keys: np.ndarray      # sorted context keys (int64)
    offsets: np.ndarray   # row r's symbols are symbols[offsets[r]:offsets[r+1]]
    symbols: np.ndarray
    counts: np.ndarray
    # Smoothing, precomputed at load: next = keep[r] * lower + (add at symbols).
    keep: np.ndarray = field(default=None, repr=False)
    add: np.ndarray = field(default=None, repr=False)
    live: dict = field(default_factory=dict, repr=False)  # key -> {symbol: count}


class _Family:
    def __init__(self, name: str, target: str, size: int, specs: list[str], levels: list[_Level],
                 discount: float, beta: float, theta: float = 0.0):
        self.name, self.target, self.size = name, target, size
        self.specs = specs
        self.levels = levels
        self.discount, self.beta, self.theta = discount, beta, theta
        self.max_lag = max((lag for lv in levels for _, lag in lv.spec), default=0)
        for level in levels:
            self._prepare(level)

    # -- building

    @classmethod
    def fit(cls, name, target, size, specs, keys_per_level, symbols, discount, beta, theta):
        levels = []
        for text, keys in zip(specs, keys_per_level):
            order = np.lexsort((symbols, keys))
            k, s = keys[order], symbols[order]
            new = np.ones(len(k), dtype=bool)
            new[1:] = (k[1:] != k[:-1]) | (s[1:] != s[:-1])
            starts = np.flatnonzero(new)
            counts = np.diff(np.append(starts, len(k)))
            pair_keys, pair_syms = k[starts], s[starts]
            row_new = np.ones(len(pair_keys), dtype=bool)
            row_new[1:] = pair_keys[1:] != pair_keys[:-1]
            row_starts = np.flatnonzero(row_new)
            levels.append(_Level(_parse_level(text), pair_keys[row_starts],
                                 np.append(row_starts, len(pair_keys)).astype(np.int64),
                                 pair_syms.astype(np.int64), counts.astype(np.float64)))
        return cls(name, target, size, specs, levels, discount, beta, theta)

    def pruned(self, min_count: int, from_level: int) -> "_Family":
        """Drop contexts seen fewer than min_count times in levels from_level and up (long contexts)."""
        levels = []
        for index, level in enumerate(self.levels):
            if index < from_level:
                levels.append(level)
                continue
            totals = np.add.reduceat(level.counts, level.offsets[:-1]) if len(level.keys) else np.zeros(0)
            keep_rows = totals >= min_count
            lengths = np.diff(level.offsets)
            keep_entries = np.repeat(keep_rows, lengths)
            levels.append(_Level(level.spec, level.keys[keep_rows],
                                 np.append(0, np.cumsum(lengths[keep_rows])).astype(np.int64),
                                 level.symbols[keep_entries], level.counts[keep_entries]))
        return _Family(self.name, self.target, self.size, self.specs, levels, self.discount, self.beta,
                       self.theta)

    def _prepare(self, level: _Level) -> None:
        lengths = np.diff(level.offsets)
        if len(level.keys):
            totals = np.add.reduceat(level.counts, level.offsets[:-1])
            discounted = np.add.reduceat(np.minimum(level.counts, self.discount), level.offsets[:-1])
        else:
            totals = discounted = np.zeros(0)
        backoff = discounted + self.beta * lengths + self.theta
        norm = 1.0 / (totals + self.beta * lengths + self.theta)
        level.keep = backoff * norm
        level.add = (level.counts - np.minimum(level.counts, self.discount)) * np.repeat(norm, lengths)

    # -- probabilities

    def _smooth_dense(self, lower: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """One interpolation step from explicit (merged corpus + live) counts."""
        n = counts.sum()
        if n <= 0:
            return lower
        types = np.count_nonzero(counts)
        discounted = np.minimum(counts, self.discount)
        return ((counts - discounted + (discounted.sum() + self.beta * types + self.theta) * lower)
                / (n + self.beta * types + self.theta))

    def _merged_counts(self, level: _Level, key: int, live_row: dict) -> np.ndarray:
        counts = np.zeros(self.size)
        r = np.searchsorted(level.keys, key)
        if r < len(level.keys) and level.keys[r] == key:
            a, b = level.offsets[r], level.offsets[r + 1]
            counts[level.symbols[a:b]] = level.counts[a:b]
        for symbol, c in live_row.items():
            counts[symbol] += c
        return counts

    def distribution(self, keys: Sequence[int]) -> np.ndarray:
        """The smoothed distribution for one position, given its key at every level (fast path)."""
        p = np.full(self.size, 1.0 / self.size)
        for level, key in zip(self.levels, keys):
            live_row = level.live.get(key) if level.live else None
            if live_row:
                p = self._smooth_dense(p, self._merged_counts(level, key, live_row))
                continue
            r = int(np.searchsorted(level.keys, key))
            if r < len(level.keys) and level.keys[r] == key:
                a, b = level.offsets[r], level.offsets[r + 1]
                p = p * level.keep[r]
                p[level.symbols[a:b]] += level.add[a:b]
        return p

    def distributions(self, keys_per_level: list[np.ndarray]) -> np.ndarray:
        """(n, size) smoothed distributions for many positions (scoring path)."""
        n = len(keys_per_level[0]) if keys_per_level else 0
        p = np.full((n, self.size), 1.0 / self.size)
        for level, keys in zip(self.levels, keys_per_level):
            live_rows = (np.flatnonzero([k in level.live for k in keys.tolist()]) if level.live
                         else np.zeros(0, np.int64))
            below = p[live_rows].copy()
            if len(level.keys):
                r = np.minimum(np.searchsorted(level.keys, keys), len(level.keys) - 1)
                rows = np.flatnonzero(level.keys[r] == keys)
                if rows.size:
                    r = r[rows]
                    p[rows] *= level.keep[r][:, None]
                    starts = level.offsets[r]
                    lengths = level.offsets[r + 1] - starts
                    at = np.repeat(rows, lengths)
                    entry = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
                    p[at, level.symbols[entry]] += level.add[entry]
            # Live rows are few: redo those positions from merged corpus + live counts.
            for i, lower in zip(live_rows.tolist(), below):
                key = int(keys[i])
                p[i] = self._smooth_dense(lower, self._merged_counts(level, key, level.live[key]))
        return p

    # -- live layer

    def learn(self, keys_per_level: list[np.ndarray], symbols: np.ndarray, amount: float) -> None:
        """Add `amount` to the live count of each (context, symbol); a negative amount takes a
        phrase back out (counts that reach 0 disappear)."""
        symbols = symbols.tolist()
        for level, keys in zip(self.levels, keys_per_level):
            live = level.live
            for key, symbol in zip(keys.tolist(), symbols):
                row = live.get(key)
                if row is None:
                    if amount > 0:
                        live[key] = {symbol: amount}
                    continue
                count = row.get(symbol, 0.0) + amount
                if count > 1e-9:
                    row[symbol] = count
                else:
                    row.pop(symbol, None)
                    if not row:
                        del live[key]

    def clear_live(self) -> None:
        for level in self.levels:
            level.live = {}

    # -- storage

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, level in enumerate(self.levels):
            prefix = f"{self.name}/{i}/"
            out[prefix + "key_steps"] = np.diff(level.keys, prepend=0).astype(np.int64)
            lengths = np.diff(level.offsets)
            out[prefix + "lengths"] = lengths.astype(np.uint16)
            out[prefix + "symbols"] = level.symbols.astype(np.uint16)
            counts = level.counts.astype(np.int64)
            out[prefix + "counts"] = counts.astype(np.uint16 if counts.max(initial=0) < 65536 else np.uint32)
        return out

    @classmethod
    def from_arrays(cls, name, target, size, specs, arrays, discount, beta, theta) -> "_Family":
        levels = []
        for i, text in enumerate(specs):
            prefix = f"{name}/{i}/"
            keys = np.cumsum(arrays[prefix + "key_steps"].astype(np.int64))
            lengths = arrays[prefix + "lengths"].astype(np.int64)
            symbols = arrays[prefix + "symbols"].astype(np.int64)
            counts = arrays[prefix + "counts"].astype(np.float64)
            offsets = np.append(0, np.cumsum(lengths))
            if (len(keys) != len(lengths) or offsets[-1] != len(symbols) or len(symbols) != len(counts)
                    or (len(keys) > 1 and np.any(np.diff(keys) <= 0)) or np.any(lengths <= 0)
                    or np.any(symbols >= size) or np.any(counts <= 0)):
                raise ValueError(f"table {prefix} is inconsistent")
            levels.append(_Level(_parse_level(text), keys, offsets, symbols, counts))
        return cls(name, target, size, specs, levels, discount, beta, theta)

    def size_entries(self) -> int:
        return sum(len(level.symbols) for level in self.levels)


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


_FAMILIES = {  # family -> (target feature, alphabet size, which rows count)
    "time": ("time", N_TIME, "all"),
    "pitch": ("tok", PITCH_TOKENS, "all"),
    "interval": ("interval", N_INTERVAL, "all"),
    "duration": ("dur", N_DURATION, "notes"),
    "velocity": ("vel", VELOCITY_BINS, "notes"),
}
_FIELD_OF_FAMILY = {"time": 0, "pitch": 1, "interval": 1, "duration": 2, "velocity": 3}


def _check_spec(spec: dict) -> None:
    for family in _FAMILIES:
        for text in spec[family]:
            for name, lag in _parse_level(text):
                if lag == 0 and _NEEDS[name] >= _FIELD_OF_FAMILY[family]:
                    raise ValueError(f"{family} context {text!r} uses {name} of the event it predicts")


_LIMITS = np.array([N_TIME, PITCH_TOKENS, N_DURATION, VELOCITY_BINS])


def _as_array(encoded) -> np.ndarray:
    """(N, 4) int64 array of encoded events; ValueError if a field is out of its range."""
    if len(encoded) == 0:
        return np.zeros((0, 4), np.int64)
    seq = np.asarray(encoded, dtype=np.int64).reshape(-1, 4)
    if (seq.min(axis=0) < 0).any() or (seq.max(axis=0) >= _LIMITS).any():
        raise ValueError("encoded events out of range (time, pitch token, duration, velocity bins)")
    return seq


# ---------------------------------------------------------------------------------------------

class MarkovModel:
    """A trained style: sample the next event, score sequences, learn the player live."""

    def __init__(self, name: str, spec: dict, families: dict[str, _Family], unigram: dict[str, np.ndarray],
                 info: dict | None = None):
        self.name = name
        self.spec = spec
        self.families = families
        self.unigram = unigram      # order-0 counts per field: the baseline markov-score reports
        self.info = info or {}
        self.max_lag = max(f.max_lag for f in families.values())
        self._live_phrases: deque[tuple[np.ndarray, float]] = deque()
        self._live_events = 0

    # -- training

    @classmethod
    def train(cls, sequences: Iterable[list[EncodedEvent]], name: str, max_order: int = 5,
              progress: bool = False, spec: dict | None = None, prune: bool = True) -> "MarkovModel":
        """Count a style from encoded performances. max_order: the longest pitch context (notes);
        spec: other contexts and smoothing (default_spec); prune: drop long contexts seen once.
        An empty corpus gives a model that knows only what it learns live."""
        spec = dict(spec or default_spec(max_order))
        _check_spec(spec)
        started = _time.perf_counter()
        keys = {family: [[] for _ in spec[family]] for family in _FAMILIES}
        targets = {family: [] for family in _FAMILIES}
        n_sequences = n_events = 0
        iterator = sequences
        if progress:
            from tqdm import tqdm
            iterator = tqdm(sequences, desc="counting", unit="seq")
        for encoded in iterator:
            seq = _as_array(encoded)
            if not len(seq):
                continue
            n_sequences += 1
            n_events += len(seq)
            feats = _features(seq, ref_pitch=60)
            notes = seq[:, 1] < 128
            for family, (target, _size, rows) in _FAMILIES.items():
                mask = notes if rows == "notes" else slice(None)
                for level_keys, text in zip(keys[family], spec[family]):
                    level_keys.append(_level_keys(_parse_level(text), feats, len(seq))[mask])
                targets[family].append(feats[target][mask])
        families = {}
        for family, (target, size, _rows) in _FAMILIES.items():
            symbols = np.concatenate(targets[family]) if targets[family] else np.zeros(0, np.int64)
            per_level = [np.concatenate(k) if k else np.zeros(0, np.int64) for k in keys[family]]
            fam = _Family.fit(family, target, size, spec[family], per_level, symbols,
                              spec["discount"], spec["beta"], spec["theta"])
            if prune:
                fam = fam.pruned(spec["min_count"], spec["prune_from"])
            families[family] = fam
        unigram = {}
        for family in ("time", "pitch", "duration", "velocity"):
            level0 = families[family].levels[0]
            counts = np.zeros(families[family].size)
            counts[level0.symbols] = level0.counts
            unigram[family] = counts
        info = {"sequences": n_sequences, "events": n_events,
                "train_seconds": round(_time.perf_counter() - started, 2)}
        return cls(name, spec, families, unigram, info)

    # -- live learning

    def learn(self, encoded: list[EncodedEvent], weight: float = 1.0) -> None:
        """Add a phrase the player just played to the live layer. Each event counts like
        weight × LIVE_BOOST corpus occurrences. The layer remembers the last LIVE_MEMORY_EVENTS
        events (older phrases are taken back out), so a long gig cannot grow it without bound."""
        seq = _as_array(encoded)
        if not len(seq) or not weight > 0:
            return
        amount = float(weight) * LIVE_BOOST
        self._add_live(seq, amount)
        self._live_phrases.append((seq, amount))
        self._live_events += len(seq)
        while self._live_events > LIVE_MEMORY_EVENTS and len(self._live_phrases) > 1:
            old, old_amount = self._live_phrases.popleft()
            self._add_live(old, -old_amount)
            self._live_events -= len(old)

    def _add_live(self, seq: np.ndarray, amount: float) -> None:
        feats = _features(seq, ref_pitch=60)
        notes = seq[:, 1] < 128
        for family, (target, _size, rows) in _FAMILIES.items():
            fam = self.families[family]
            mask = notes if rows == "notes" else slice(None)
            keys = [_level_keys(level.spec, feats, len(seq))[mask] for level in fam.levels]
            fam.learn(keys, feats[target][mask], amount)

    def clear_live(self) -> None:
        """Forget everything learned live."""
        for fam in self.families.values():
            fam.clear_live()
        self._live_phrases.clear()
        self._live_events = 0

    # -- scoring

    def field_probabilities(self, encoded) -> dict[str, np.ndarray]:
        """Per event, the probability of its actual value under each factor (1 where not charged)."""
        seq = _as_array(encoded)
        n = len(seq)
        feats = _features(seq, ref_pitch=60)
        notes = seq[:, 1] < 128
        parts: dict[str, list[np.ndarray]] = {name: [np.ones(0)] for name in FIELDS}
        for start in range(0, n, 4096):  # chunks keep the dense (events × symbols) rows small
            rows = np.arange(start, min(n, start + 4096))
            for name, probs in self._field_probs_at(feats, rows, seq, notes, n).items():
                parts[name].append(probs)
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def _family_keys(self, family: str, feats, rows, n) -> list[np.ndarray]:
        return [_level_keys(level.spec, feats, n)[rows] for level in self.families[family].levels]

    def _field_probs_at(self, feats, rows, seq, notes, n) -> dict[str, np.ndarray]:
        out = {}
        dist = self.families["time"].distributions(self._family_keys("time", feats, rows, n))
        out["time"] = dist[np.arange(len(rows)), seq[rows, 0]]
        pitch = self._pitch_distributions(feats, rows, n)
        out["pitch"] = pitch[np.arange(len(rows)), seq[rows, 1]]
        for family, column in (("duration", 2), ("velocity", 3)):
            probs = np.ones(len(rows))
            note_rows = rows[notes[rows]]
            if note_rows.size:
                dist = self.families[family].distributions(self._family_keys(family, feats, note_rows, n))
                probs[notes[rows]] = dist[np.arange(len(note_rows)), seq[note_rows, column]]
            out[family] = probs
        return out

    def _pitch_distributions(self, feats, rows, n) -> np.ndarray:
        absolute = self.families["pitch"].distributions(self._family_keys("pitch", feats, rows, n))
        share = self.spec["interval_share"]
        if share <= 0:
            return absolute
        intervals = self.families["interval"].distributions(self._family_keys("interval", feats, rows, n))
        return (1 - share) * absolute + share * self._interval_to_pitch(intervals, feats["prev"][rows])

    def _interval_to_pitch(self, intervals: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """(n, 257) interval distributions → (n, 130) pitch distributions via the register prior."""
        prev = np.asarray(prev).reshape(-1)
        pitches = np.arange(128)
        notes = intervals[np.arange(len(prev))[:, None], pitches[None, :] - prev[:, None] + 127]
        notes = notes * self._register_prior()
        note_mass = 1.0 - intervals[:, INTERVAL_DOWN] - intervals[:, INTERVAL_UP]
        notes *= (note_mass / notes.sum(axis=1))[:, None]
        return np.concatenate((notes, intervals[:, [INTERVAL_DOWN, INTERVAL_UP]]), axis=1)

    def _register_prior(self) -> np.ndarray:
        prior = getattr(self, "_prior", None)
        if prior is None:
            counts = self.unigram["pitch"][:128]
            prior = ((counts + 0.5) / (counts.sum() + 64.0)) ** self.spec["register_power"]
            self._prior = prior
        return prior

    def log2_probs(self, encoded) -> np.ndarray:
        """Bits of every event (−log2 P(event | the events before it in this sequence))."""
        probs = self.field_probabilities(encoded)
        return -sum(np.log2(probs[name]) for name in FIELDS)

    def bits_per_event(self, encoded: list[EncodedEvent]) -> float:
        bits = self.log2_probs(encoded)
        return float(bits.mean()) if len(bits) else float("nan")

    def unigram_log2_probs(self, encoded) -> np.ndarray:
        """Bits per event under the baseline: order-0 add-one unigram of each field, same training data."""
        seq = _as_array(encoded)
        bits = np.zeros(len(seq))
        notes = seq[:, 1] < 128
        for family, column in (("time", 0), ("pitch", 1), ("duration", 2), ("velocity", 3)):
            counts = self.unigram[family]
            p = (counts + 1.0) / (counts.sum() + len(counts))
            charged = notes if family in ("duration", "velocity") else np.ones(len(seq), bool)
            bits[charged] -= np.log2(p[seq[charged, column]])
        return bits

    # -- sampling

    def sample(self, history: list[EncodedEvent], rng: np.random.Generator, temperature: float = 1.0,
               pitch_weights: np.ndarray | None = None, time_weights: np.ndarray | None = None,
               allow_pedal: bool = True) -> EncodedEvent:
        """The next event after `history`. pitch_weights (130) and time_weights (27) multiply the
        model's probabilities (0 forbids); temperature < 1 is safer, > 1 wilder."""
        return _sample([(self, 1.0)], history, rng, temperature, pitch_weights, time_weights, allow_pedal)

    def _cursor(self, history) -> "_Cursor":
        return _Cursor(self, history)

    # -- storage

    def save(self, path: Path) -> None:
        path = Path(path)
        header = {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name, "spec": self.spec,
                  "info": self.info}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        for family in self.families.values():
            arrays.update(family.arrays())
        for family, counts in self.unigram.items():
            arrays[f"unigram/{family}"] = counts.astype(np.int64)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "MarkovModel":
        path = Path(path)
        if not path.is_file():
            raise MarkovError(f"{path}: Markov table not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except Exception as exc:  # zip, zlib and numpy each have their own ways to fail
            raise MarkovError(f"{path}: not a readable Markov table ({type(exc).__name__}: {exc})") from None
        try:
            header = json.loads(bytes(arrays["header"]).decode())
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise MarkovError(f"{path}: Markov table has no readable header ({exc})") from None
        if header.get("format") != FORMAT:
            raise MarkovError(f"{path}: not a Sideman Markov table (format {header.get('format')!r})")
        if header.get("version") != FORMAT_VERSION:
            raise MarkovError(f"{path}: Markov table format version {header.get('version')!r}, "
                              f"this Sideman reads version {FORMAT_VERSION}; retrain with sideman-train markov")
        try:
            spec = header["spec"]
            _check_spec(spec)
            families = {}
            for family, (target, size, _rows) in _FAMILIES.items():
                families[family] = _Family.from_arrays(family, target, size, spec[family], arrays,
                                                       spec["discount"], spec["beta"], spec["theta"])
            unigram = {}
            for family, size in (("time", N_TIME), ("pitch", PITCH_TOKENS), ("duration", N_DURATION),
                                 ("velocity", VELOCITY_BINS)):
                unigram[family] = arrays[f"unigram/{family}"].astype(np.float64)
                if unigram[family].shape != (size,):
                    raise ValueError(f"unigram/{family} has shape {unigram[family].shape}")
            return cls(header["name"], spec, families, unigram, header.get("info"))
        except (KeyError, ValueError, TypeError) as exc:
            raise MarkovError(f"{path}: corrupt Markov table ({type(exc).__name__}: {exc})") from None


class _Cursor:
    """The context of the next event after `history`, for one model: keys are built field by field
    as the event's fields are chosen (features of the history are computed once)."""

    def __init__(self, model: MarkovModel, history):
        look = max(model.max_lag, HARMONY_WINDOW)
        tail = list(history[-look:]) if len(history) else []
        # The last note before the tail: the interval reference of the tail's first events.
        ref = 60
        for i in range(len(history) - len(tail) - 1, max(-1, len(history) - len(tail) - 65), -1):
            if history[i][1] < 128:
                ref = int(history[i][1])
                break
        # A placeholder row stands for the event being chosen: its history-only features are real.
        self.feats = _features(_as_array(tail + [(0, 0, 0, 0)]), ref)
        self.n = len(tail)
        self.prev_pitch = int(self.feats["prev"][-1])
        self.model = model

    def keys(self, family: str, row: Sequence[int]) -> list[int]:
        out = []
        for level in self.model.families[family].levels:
            key = shift = 0
            for name, lag in level.spec:
                if lag == 0:
                    value = (int(self.feats[name][self.n]) if _NEEDS[name] < 0
                             else _current_feature(name, row, self.prev_pitch))
                elif lag <= self.n:
                    value = int(self.feats[name][self.n - lag])
                else:
                    value = _start(name)
                key |= value << shift
                shift += _FEATURES[name][0]
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
            return (1 - share) * absolute + share * model._interval_to_pitch(intervals[None, :],
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


def _sample(members, history, rng, temperature, pitch_weights, time_weights, allow_pedal) -> EncodedEvent:
    history = history[-(max(m.max_lag for m, _ in members) + HARMONY_WINDOW + 64):]  # enough to find the last note
    cursors = [(model._cursor(history), w) for model, w in members]

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


# ---------------------------------------------------------------------------------------------

class MarkovBlend:
    """A style blend: a weighted mix of several models' distributions, factor by factor (same
    sample / bits_per_event / learn API). Weights are normalised; a weight of 0 drops a model."""

    def __init__(self, models_and_weights: list[tuple[MarkovModel, float]]):
        members = [(m, float(w)) for m, w in models_and_weights if float(w) > 0]
        if not members:
            raise ValueError("a style blend needs at least one model with a positive weight")
        total = sum(w for _, w in members)
        self.members = [(m, w / total) for m, w in members]
        self.name = "+".join(f"{m.name}:{w:.2f}" for m, w in self.members) if len(self.members) > 1 \
            else self.members[0][0].name
        self.max_lag = max(m.max_lag for m, _ in self.members)

    def sample(self, history, rng, temperature=1.0, pitch_weights=None, time_weights=None,
               allow_pedal=True) -> EncodedEvent:
        return _sample(self.members, history, rng, temperature, pitch_weights, time_weights, allow_pedal)

    def log2_probs(self, encoded) -> np.ndarray:
        mixed = {name: 0.0 for name in FIELDS}
        for model, w in self.members:
            for name, probs in model.field_probabilities(encoded).items():
                mixed[name] = mixed[name] + w * probs
        return -sum(np.log2(np.asarray(mixed[name], dtype=np.float64)) for name in FIELDS)

    def bits_per_event(self, encoded) -> float:
        bits = self.log2_probs(encoded)
        return float(bits.mean()) if len(bits) else float("nan")

    def learn(self, encoded, weight: float = 1.0) -> None:
        for model, _ in self.members:
            model.learn(encoded, weight)

    def clear_live(self) -> None:
        for model, _ in self.members:
            model.clear_live()


# ---------------------------------------------------------------------------------------------

def style_path(name: str) -> Path:
    return models_dir() / "markov" / f"{name}{TABLE_SUFFIX}"


def load_style(name: str) -> MarkovModel:
    """A shipped style table by name (models/markov/<name>.npz)."""
    return MarkovModel.load(style_path(name))


def available_styles() -> list[str]:
    folder = models_dir() / "markov"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-len(TABLE_SUFFIX)] for p in folder.glob(f"*{TABLE_SUFFIX}") if not p.name.startswith("."))
