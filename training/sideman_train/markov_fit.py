"""Counting a Markov style offline: the corpus fit behind `sideman-train markov`, and writing the
table the box loads (sideman.model.markov.MarkovModel.load reads what save_markov writes).

The box never counts a corpus: it loads tables, and its live layer (MarkovModel.learn, in the
runtime package) adds the player's phrases on top of them."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from sideman.model.events import EncodedEvent
from sideman.model.markov import FORMAT, FORMAT_VERSION, Family, Level, MarkovModel
from sideman.model.markov_contexts import (FAMILIES, FIELDS, as_array, check_spec, default_spec, features,
                                           level_keys, parse_level)
from sideman.paths import write_atomically


def fit_markov(sequences: Iterable[list[EncodedEvent]], name: str, max_order: int = 5, progress: bool = False,
               spec: dict | None = None, prune: bool = True) -> MarkovModel:
    """Count a style from encoded performances. max_order: the longest pitch context (notes);
    spec: other contexts and smoothing (default_spec); prune: drop long contexts seen once.
    An empty corpus gives a model that knows only what it learns live (= MarkovModel.empty)."""
    spec = dict(spec or default_spec(max_order))
    check_spec(spec)
    started = time.perf_counter()
    keys = {family: [[] for _ in spec[family]] for family in FAMILIES}
    targets = {family: [] for family in FAMILIES}
    n_sequences = n_events = 0
    iterator = sequences
    if progress:
        from tqdm import tqdm
        iterator = tqdm(sequences, desc="counting", unit="seq")
    for encoded in iterator:
        seq = as_array(encoded)
        if not len(seq):
            continue
        n_sequences += 1
        n_events += len(seq)
        feats = features(seq, ref_pitch=60)
        notes = seq[:, 1] < 128
        for family, (target, _size, rows) in FAMILIES.items():
            mask = notes if rows == "notes" else slice(None)
            for collected, text in zip(keys[family], spec[family]):
                collected.append(level_keys(parse_level(text), feats, len(seq))[mask])
            targets[family].append(feats[target][mask])
    families = {}
    for family, (target, size, _rows) in FAMILIES.items():
        symbols = np.concatenate(targets[family]) if targets[family] else np.zeros(0, np.int64)
        per_level = [np.concatenate(k) if k else np.zeros(0, np.int64) for k in keys[family]]
        levels = [_counted_level(text, k, symbols) for text, k in zip(spec[family], per_level)]
        if prune:
            levels = _pruned(levels, spec["min_count"], spec["prune_from"])
        families[family] = Family(family, target, size, spec[family], levels, spec["discount"], spec["beta"],
                                  spec["theta"])
    unigram = {}
    for family in FIELDS:
        level0 = families[family].levels[0]
        counts = np.zeros(families[family].size)
        counts[level0.symbols] = level0.counts
        unigram[family] = counts
    info = {"sequences": n_sequences, "events": n_events,
            "train_seconds": round(time.perf_counter() - started, 2)}
    return MarkovModel(name, spec, families, unigram, info)


def _counted_level(text: str, keys: np.ndarray, symbols: np.ndarray) -> Level:
    """One level's table: the distinct (context key, symbol) pairs and their counts, rows sorted by key."""
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
    return Level(parse_level(text), pair_keys[row_starts], np.append(row_starts, len(pair_keys)).astype(np.int64),
                 pair_syms.astype(np.int64), counts.astype(np.float64))


def _pruned(levels: list[Level], min_count: int, from_level: int) -> list[Level]:
    """Drop contexts seen fewer than min_count times in levels from_level and up (long contexts)."""
    out = []
    for index, level in enumerate(levels):
        if index < from_level:
            out.append(level)
            continue
        totals = np.add.reduceat(level.counts, level.offsets[:-1]) if len(level.keys) else np.zeros(0)
        keep_rows = totals >= min_count
        lengths = np.diff(level.offsets)
        keep_entries = np.repeat(keep_rows, lengths)
        out.append(Level(level.spec, level.keys[keep_rows],
                         np.append(0, np.cumsum(lengths[keep_rows])).astype(np.int64),
                         level.symbols[keep_entries], level.counts[keep_entries]))
    return out


# ---------------------------------------------------------------------------------------------
# The table on disk (layout: sideman.model.markov's docstring; read by Family.from_arrays)

def save_markov(model: MarkovModel, path: Path) -> None:
    """Write the model's corpus tables (not its live layer) as one compressed .npz, atomically."""
    header = {"format": FORMAT, "version": FORMAT_VERSION, "name": model.name, "spec": model.spec,
              "info": model.info}
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for family in model.families.values():
        arrays.update(_family_arrays(family))
    for family, counts in model.unigram.items():
        arrays[f"unigram/{family}"] = counts.astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomically(Path(path), buffer.getvalue())


def _family_arrays(family: Family) -> dict[str, np.ndarray]:
    out = {}
    for i, level in enumerate(family.levels):
        prefix = f"{family.name}/{i}/"
        out[prefix + "key_steps"] = np.diff(level.keys, prepend=0).astype(np.int64)
        lengths = np.diff(level.offsets)
        out[prefix + "lengths"] = lengths.astype(np.uint16)
        out[prefix + "symbols"] = level.symbols.astype(np.uint16)
        counts = level.counts.astype(np.int64)
        out[prefix + "counts"] = counts.astype(np.uint16 if counts.max(initial=0) < 65536 else np.uint32)
    return out
