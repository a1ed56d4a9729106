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
info, and the order-0 unigram counts that `markov-score` reports as the baseline). The box only
reads them (MarkovModel.load); `sideman-train markov` counts and writes them
(sideman_train/markov_fit.py).

Modules: this one holds the tables, live learning, scoring, loading and the shipped styles;
markov_contexts.py the features and contexts every factor conditions on; markov_sampling.py the
sampler.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from sideman.model import markov_sampling
from sideman.model.events import PITCH_TOKENS, VELOCITY_BINS, EncodedEvent
from sideman.model.markov_contexts import (FAMILIES, FIELDS, INTERVAL_DOWN, INTERVAL_UP, N_DURATION, N_TIME,
                                           as_array, check_spec, default_spec, features, level_keys,
                                           parse_level)
from sideman.paths import models_dir

FORMAT = "sideman-markov"
FORMAT_VERSION = 1
DEFAULT_STYLE = "mehldau"
TABLE_SUFFIX = ".npz"

# A live (player) event counts like this many corpus occurrences at weight 1.0 (2–4 were best at
# predicting the rest of a performance from its first half). The live layer keeps the most recent
# LIVE_MEMORY_EVENTS events: the tune being played (about 7 minutes at 5 notes/s). Each event
# costs ~2 kB of Python dicts, so the bound also keeps a long gig's memory flat: reached within
# about 15 minutes of playing, not after an hour.
LIVE_BOOST = 3.0
LIVE_MEMORY_EVENTS = 2_000


class MarkovError(Exception):
    """A table that cannot be used: the message names the file and what is wrong."""


# ---------------------------------------------------------------------------------------------
# One smoothed backoff family (one field, or the interval view of pitch).

@dataclass
class Level:
    spec: tuple[tuple[str, int], ...]
    keys: np.ndarray      # sorted context keys (int64)
    offsets: np.ndarray   # row r's symbols are symbols[offsets[r]:offsets[r+1]]
    symbols: np.ndarray
    counts: np.ndarray
    # Smoothing, precomputed at load: next = keep[r] * lower + (add at symbols).
    keep: np.ndarray = field(default=None, repr=False)
    add: np.ndarray = field(default=None, repr=False)
    live: dict = field(default_factory=dict, repr=False)  # key -> {symbol: count}


class Family:
    """The smoothed backoff chain of one factor: levels from the empty context up, each
    interpolating its counts (corpus + live) with the level below."""

    def __init__(self, name: str, target: str, size: int, specs: list[str], levels: list[Level],
                 discount: float, beta: float, theta: float = 0.0):
        self.name, self.target, self.size = name, target, size
        self.specs = specs
        self.levels = levels
        self.discount, self.beta, self.theta = discount, beta, theta
        self.max_lag = max((lag for lv in levels for _, lag in lv.spec), default=0)
        for level in levels:
            self._prepare(level)

    # -- smoothing

    def _prepare(self, level: Level) -> None:
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

    def _merged_counts(self, level: Level, key: int, live_row: dict) -> np.ndarray:
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

    # -- loading

    @classmethod
    def from_arrays(cls, name, target, size, specs, arrays, discount, beta, theta) -> "Family":
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
            levels.append(Level(parse_level(text), keys, offsets, symbols, counts))
        return cls(name, target, size, specs, levels, discount, beta, theta)


# ---------------------------------------------------------------------------------------------

class MarkovModel:
    """A trained style: sample the next event, score sequences, learn the player live."""

    def __init__(self, name: str, spec: dict, families: dict[str, Family], unigram: dict[str, np.ndarray],
                 info: dict | None = None):
        self.name = name
        self.spec = spec
        self.families = families
        self.unigram = unigram      # order-0 counts per field: the baseline markov-score reports
        self.info = info or {}
        self.max_lag = max(f.max_lag for f in families.values())
        self._live_phrases: deque[tuple[np.ndarray, float]] = deque()
        self._live_events = 0

    @classmethod
    def empty(cls, name: str, max_order: int = 5, spec: dict | None = None) -> "MarkovModel":
        """A model with no corpus: it knows only what it learns live (the box's fallback when a
        style's table is missing). The same model sideman-train would count from no performances."""
        spec = dict(spec or default_spec(max_order))
        check_spec(spec)
        families = {}
        for family, (target, size, _rows) in FAMILIES.items():
            levels = [Level(parse_level(text), np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64),
                            np.zeros(0)) for text in spec[family]]
            families[family] = Family(family, target, size, spec[family], levels, spec["discount"], spec["beta"],
                                      spec["theta"])
        unigram = {family: np.zeros(families[family].size) for family in FIELDS}
        return cls(name, spec, families, unigram, {"sequences": 0, "events": 0, "train_seconds": 0.0})

    # -- live learning

    def learn(self, encoded: list[EncodedEvent], weight: float = 1.0) -> None:
        """Add a phrase the player just played to the live layer. Each event counts like
        weight × LIVE_BOOST corpus occurrences. The layer remembers the last LIVE_MEMORY_EVENTS
        events (older phrases are taken back out), so a long gig cannot grow it without bound."""
        seq = as_array(encoded)
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
        feats = features(seq, ref_pitch=60)
        notes = seq[:, 1] < 128
        for family, (target, _size, rows) in FAMILIES.items():
            fam = self.families[family]
            mask = notes if rows == "notes" else slice(None)
            keys = [level_keys(level.spec, feats, len(seq))[mask] for level in fam.levels]
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
        seq = as_array(encoded)
        n = len(seq)
        feats = features(seq, ref_pitch=60)
        notes = seq[:, 1] < 128
        parts: dict[str, list[np.ndarray]] = {name: [np.ones(0)] for name in FIELDS}
        for start in range(0, n, 4096):  # chunks keep the dense (events × symbols) rows small
            rows = np.arange(start, min(n, start + 4096))
            for name, probs in self._field_probs_at(feats, rows, seq, notes, n).items():
                parts[name].append(probs)
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def _family_keys(self, family: str, feats, rows, n) -> list[np.ndarray]:
        return [level_keys(level.spec, feats, n)[rows] for level in self.families[family].levels]

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
        return (1 - share) * absolute + share * self.interval_to_pitch(intervals, feats["prev"][rows])

    def interval_to_pitch(self, intervals: np.ndarray, prev: np.ndarray) -> np.ndarray:
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
        seq = as_array(encoded)
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
        return markov_sampling.sample([(self, 1.0)], history, rng, temperature, pitch_weights, time_weights,
                                      allow_pedal)

    def _cursor(self, history) -> "markov_sampling.Cursor":
        return markov_sampling.Cursor(self, history)

    # -- loading

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
            check_spec(spec)
            families = {}
            for family, (target, size, _rows) in FAMILIES.items():
                families[family] = Family.from_arrays(family, target, size, spec[family], arrays,
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
        return markov_sampling.sample(self.members, history, rng, temperature, pitch_weights, time_weights, allow_pedal)

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
