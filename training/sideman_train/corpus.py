"""The transformer's corpus cache: every performance of a corpus parsed once into flat numpy arrays.

Index: PiJAMA (pijama.csv rows: id, artist, title, split, midi_path) or any folder of .mid/.midi
files (recursive; artist = --pianist or the parent folder's name; split = a hash of the relative
path, about 1 in 10 to val). Splits are by recording, never by window. Every `sideman-train`
command lists its performances here (list_performances), and names a corpus on the command line
with the same flags (add_corpus_options).

Parsing: symusic, in ticks; seconds come from the file's tempo map in float64 (symusic's own
seconds are float32, a tenth of a millisecond off after twenty minutes). The events are the ones
sideman.midi_files.read_performance (mido) reads: the notes of every track with their durations
(overlapping notes of one key paired first in, first out), and the sustain pedal's changes of
state (CC64, >= 64 down) per channel, in sideman.model.events.sort_events order. One difference:
a note that is never released is dropped by symusic, where the mido reader ends it at the file's
end (none in PiJAMA's transcriptions).

Arrays per event: onset_s float64, pitch int16 (0..127 notes, 128/129 pedal down/up), duration_s
float32 (0 for pedal), velocity uint8 (0 for pedal), bpm, beat_phase and beat_confidence float32.

bpm, beat_phase, beat_confidence: causal, sideman.listen.tempo.BeatTracker (the box's own tracker)
fed every note onset in order (with velocity and pitch); after each event, its estimate at that
event's onset: the tempo, where the onset falls in the beat (0..1, 0 on the beat) and how sure the
tracker is of its grid (0..1). The
tracker groups notes within 40 ms into one onset itself (the extra notes of a chord cost a vector
add), so the cost is that of one tracker step per onset cluster: about 40 µs, a few minutes of CPU
for all of PiJAMA, split over --jobs processes. Until the tracker has heard enough it says 120 bpm
(its initial guess, tempo feature 0).

Cache (CACHE_DIR): {split}.npz (the arrays of every kept performance of the split, concatenated,
and offsets int64 (P+1)), index.json (format, version, source, and per performance: id, artist,
title, split, path relative to the source, n_events, duration_s, sha1 of the file; in npz order
within each split). Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sideman.model.events import PEDAL_DOWN, PEDAL_UP
from sideman.paths import write_atomically, write_atomically_with

CACHE_FORMAT = "sideman-corpus"
CACHE_VERSION = 2         # 2: beat_phase and beat_confidence
MIDI_SUFFIXES = (".mid", ".midi")
PULSE_ARRAYS = ("bpm", "beat_phase", "beat_confidence")
ARRAYS = ("onset_s", "pitch", "duration_s", "velocity", *PULSE_ARRAYS)
DTYPES = {"onset_s": np.float64, "pitch": np.int16, "duration_s": np.float32,
          "velocity": np.uint8, "bpm": np.float32, "beat_phase": np.float32, "beat_confidence": np.float32}
VAL_SHARE = 10            # folder corpora: one file in VAL_SHARE goes to val (by path hash)
DEDUP_ROUND_S = 0.01      # onsets rounded to this before hashing for de-duplication
CC_SUSTAIN = 64
DEFAULT_TEMPO_US = 500_000


class CorpusError(Exception):
    """The corpus cannot be listed (missing csv or folder, no files, nobody by that name) or the
    cache cannot be read (the message says why)."""


class Performance(NamedTuple):
    label: str   # the file as messages and reports name it: its path relative to the corpus folder
    path: Path


# ---------------------------------------------------------------------------------------------
# Index

def hash_split(relative_path: str) -> str:
    """Deterministic train/val split of a folder corpus by the file's relative path."""
    digest = hashlib.sha1(relative_path.replace(os.sep, "/").encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") % VAL_SHARE == 0 else "train"


def index_pijama(root: str | Path) -> list[dict]:
    """One record per row of pijama.csv: id, artist, album, title, split, path (relative to root)."""
    root = Path(root)
    table = root / "pijama.csv"
    if not table.is_file():
        raise CorpusError(f"{table}: not found (is --pijama the folder holding pijama.csv?)")
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"id", "artist", "title", "midi_path", "split"} - set(rows[0] if rows else {})
    if missing:
        raise CorpusError(f"{table}: columns missing: {', '.join(sorted(missing))}")
    return [{"id": r["id"], "artist": r["artist"], "album": r.get("album", ""), "title": r["title"],
             "split": r["split"], "path": r["midi_path"]} for r in rows]


def index_folder(folder: str | Path, artist: str | None = None) -> list[dict]:
    """Every .mid/.midi file under folder (recursive), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder}: not a folder")
    paths = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not paths:
        raise CorpusError(f"{folder}: no .mid or .midi files in it")
    records = []
    for p in paths:
        rel = p.relative_to(folder).as_posix()
        records.append({"id": rel, "artist": artist if artist else (p.parent.name or folder.name),
                        "title": p.stem, "split": hash_split(rel), "path": rel})
    return records


def list_performances(folder: str | Path, pianist: str | None = None, split: str | None = None,
                      pijama: bool | None = None) -> list[Performance]:
    """The performances of a corpus, in index order: the rows of pijama.csv (pijama=True, or None
    and the folder holds one) or every .mid/.midi file under the folder (index_folder: its files'
    pianist is their folder's name, their split the path hash), only `pianist`'s and `split`'s when
    given. Raises CorpusError when the corpus cannot be listed or nothing matches."""
    folder = Path(folder)
    if pijama is None:
        pijama = (folder / "pijama.csv").is_file()
    records = index_pijama(folder) if pijama else index_folder(folder)
    chosen = [r for r in records
              if (pianist is None or r["artist"] == pianist) and (split is None or r["split"] == split)]
    if not chosen:
        where = folder / "pijama.csv" if pijama else folder
        if pianist is None:
            raise CorpusError(f"{where}: no performances in split {split!r}")
        known = sorted({r["artist"] for r in records if r["artist"].lower() == pianist.lower()}
                       or {r["artist"] for r in records if pianist and pianist.lower() in r["artist"].lower()})
        hint = f" (did you mean {', '.join(known)}?)" if known else ""
        raise CorpusError(f"{where}: no performances by {pianist!r} in split {split!r}{hint}")
    return [Performance(r["path"], folder / r["path"]) for r in chosen]


def add_corpus_options(parser: argparse.ArgumentParser, folder_help: str, pianist_help: str,
                       source=None) -> None:
    """--folder DIR and --pianist NAME, the words every sideman-train command uses for a corpus
    (--pijama DIR, where a command has it, stays its own flag). --data and --artist, the words some
    commands used before, still work, hidden from --help. source: where --folder goes (a required
    mutually exclusive group, e.g. beside --pijama); default the parser itself."""
    where = parser if source is None else source
    where.add_argument("--folder", type=Path, help=folder_help)
    where.add_argument("--data", dest="folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pianist", help=pianist_help)
    parser.add_argument("--artist", dest="pianist", help=argparse.SUPPRESS)


# ---------------------------------------------------------------------------------------------
# Parsing

def _seconds_of_ticks(ticks: np.ndarray, tempos: list[tuple[int, int]], tpq: int) -> np.ndarray:
    """Seconds of tick times through a tempo map [(tick, microseconds per quarter)], float64."""
    change_ticks = np.array([0] + [t for t, _ in tempos], dtype=np.int64)
    tempo_us = np.array([DEFAULT_TEMPO_US] + [us for _, us in tempos], dtype=np.float64)
    order = np.argsort(change_ticks, kind="stable")
    change_ticks, tempo_us = change_ticks[order], tempo_us[order]
    per_tick = tempo_us / (1e6 * tpq)
    starts = np.concatenate([[0.0], np.cumsum(np.diff(change_ticks) * per_tick[:-1])])
    k = np.searchsorted(change_ticks, ticks, side="right") - 1
    return starts[k] + (ticks - change_ticks[k]) * per_tick[k]


def _order(onset: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """sort_events order: time; at equal times pedal-up, notes low to high, pedal-down."""
    kind = np.where(pitch == PEDAL_UP, 0, np.where(pitch == PEDAL_DOWN, 2, 1))
    return np.lexsort((pitch, kind, onset))


def parse_midi_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Notes and sustain-pedal changes of a MIDI file's bytes: onset_s, pitch, duration_s, velocity
    (no bpm), in event order. Raises for a file symusic cannot read."""
    import symusic

    score = symusic.Score.from_midi(data)  # ticks
    tpq = int(score.tpq)
    tempos = [(int(t.time), int(t.mspq)) for t in score.tempos]
    on, end, pit, vel = [], [], [], []
    ped_t, ped_p = [], []
    for track in score.tracks:
        notes = track.notes.numpy()
        if notes["time"].size:
            start = notes["time"].astype(np.int64)
            on.append(start)
            end.append(start + notes["duration"].astype(np.int64))
            pit.append(notes["pitch"].astype(np.int16))
            vel.append(notes["velocity"].astype(np.uint8))
        controls = track.controls.numpy()
        sustain = controls["number"] == CC_SUSTAIN
        if sustain.any():
            times = controls["time"][sustain].astype(np.int64)
            down = controls["value"][sustain] >= 64
            order = np.argsort(times, kind="stable")
            times, down = times[order], down[order]
            changed = down != np.concatenate([[False], down[:-1]])  # the pedal starts up
            ped_t.append(times[changed])
            ped_p.append(np.where(down[changed], PEDAL_DOWN, PEDAL_UP).astype(np.int16))
    ticks_on = np.concatenate(on + ped_t) if on or ped_t else np.zeros(0, np.int64)
    n_notes = sum(a.size for a in on)
    onset = _seconds_of_ticks(ticks_on, tempos, tpq)
    duration = np.zeros(ticks_on.size, dtype=np.float64)
    if n_notes:
        duration[:n_notes] = _seconds_of_ticks(np.concatenate(end), tempos, tpq) - onset[:n_notes]
    pitch = np.concatenate(pit + ped_p) if pit or ped_p else np.zeros(0, np.int16)
    velocity = np.zeros(ticks_on.size, dtype=np.uint8)
    if n_notes:
        velocity[:n_notes] = np.concatenate(vel)
    order = _order(onset, pitch)
    return {"onset_s": onset[order], "pitch": pitch[order].astype(np.int16),
            "duration_s": np.maximum(duration[order], 0.0).astype(np.float32),
            "velocity": velocity[order]}


def pulse_track(onset_s: np.ndarray, pitch: np.ndarray, velocity: np.ndarray) -> dict[str, np.ndarray]:
    """Causal bpm, beat_phase and beat_confidence after each event: the BeatTracker fed every note
    onset in order, asked at the event's onset (a pedal event takes the estimate at its time from
    the notes before it)."""
    from sideman.listen.tempo import BeatTracker

    tracker = BeatTracker()
    n = onset_s.size
    out = {name: np.empty(n, dtype=np.float32) for name in PULSE_ARRAYS}
    for i, (t, p, v) in enumerate(zip(onset_s.tolist(), pitch.tolist(), velocity.tolist())):
        if p < PEDAL_DOWN:
            tracker.onset(t, v, p)
        estimate = tracker.estimate(t)
        out["bpm"][i] = estimate.tempo_bpm
        out["beat_phase"][i] = estimate.beat_position(t) % 1.0
        out["beat_confidence"][i] = estimate.confidence
    return out


def read_events(path: str | Path, with_pulse: bool = True) -> dict[str, np.ndarray]:
    """parse_midi_bytes of a file, plus the pulse arrays (pulse_track) unless with_pulse is False."""
    arrays = parse_midi_bytes(Path(path).read_bytes())
    if with_pulse:
        arrays.update(pulse_track(arrays["onset_s"], arrays["pitch"], arrays["velocity"]))
    return arrays


def performance_hash(onset_s: np.ndarray, pitch: np.ndarray) -> str:
    """Identity of a performance for de-duplication: pitches and onsets (rounded, from the first)."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(pitch, dtype=np.int16).tobytes())
    if onset_s.size:
        h.update(np.rint((onset_s - onset_s[0]) / DEDUP_ROUND_S).astype(np.int64).tobytes())
    return h.hexdigest()


def parse_record(job: tuple[str, dict]) -> dict:
    """Worker: ("root", record) -> {"ok": True, "arrays", "sha1", "perf_hash"} or {"ok": False,
    "reason", "detail"}. Never raises."""
    root, record = job
    path = Path(root) / record["path"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"ok": False, "reason": "missing", "detail": f"{type(exc).__name__}: {exc.strerror or exc}"}
    if not data:
        return {"ok": False, "reason": "empty", "detail": "empty file (0 bytes)"}
    try:
        arrays = parse_midi_bytes(data)
    except Exception as exc:  # symusic raises RuntimeError for most damage; anything else too
        return {"ok": False, "reason": "unreadable", "detail": f"not a readable MIDI file ({exc})"}
    if not (arrays["pitch"] < PEDAL_DOWN).any():
        return {"ok": False, "reason": "empty", "detail": "no notes"}
    try:
        arrays.update(pulse_track(arrays["onset_s"], arrays["pitch"], arrays["velocity"]))
    except Exception as exc:
        return {"ok": False, "reason": "unreadable", "detail": f"tempo tracking failed ({type(exc).__name__}: {exc})"}
    return {"ok": True, "arrays": arrays, "sha1": hashlib.sha1(data).hexdigest(),
            "perf_hash": performance_hash(arrays["onset_s"], arrays["pitch"])}


# ---------------------------------------------------------------------------------------------
# Cache

@dataclass
class CorpusSplit:
    """One split of the cache: the concatenated arrays, offsets (P+1) and the performance records."""
    split: str
    onset_s: np.ndarray
    pitch: np.ndarray
    duration_s: np.ndarray
    velocity: np.ndarray
    bpm: np.ndarray
    beat_phase: np.ndarray
    beat_confidence: np.ndarray
    offsets: np.ndarray
    performances: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> np.ndarray:
        """Events per performance (int64, P)."""
        return np.diff(self.offsets)

    def performance(self, i: int) -> dict[str, np.ndarray]:
        """The arrays of performance i (views into the split's arrays)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {name: getattr(self, name)[a:b] for name in ARRAYS}


def write_cache(cache_dir: str | Path, source: dict, kept: list[tuple[dict, dict]]) -> dict:
    """Write {split}.npz and index.json for the kept (record, arrays) pairs; returns the index."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[tuple[dict, dict]]] = {}
    for record, arrays in kept:
        splits.setdefault(record["split"], []).append((record, arrays))
    performances = []
    summary = {}
    for split in sorted(splits):
        items = splits[split]
        lengths = [a["pitch"].size for _, a in items]
        out = {name: np.concatenate([a[name] for _, a in items]).astype(DTYPES[name], copy=False)
               for name in ARRAYS}
        out["offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        write_atomically_with(cache_dir / f"{split}.npz", lambda fh: np.savez(fh, **out))
        performances.extend(record for record, _ in items)
        summary[split] = {"performances": len(items), "events": int(sum(lengths)),
                          "hours": round(sum(r["duration_s"] for r, _ in items) / 3600, 3)}
    index = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "source": source,
             "arrays": {name: np.dtype(DTYPES[name]).name for name in ARRAYS},
             "splits": summary, "performances": performances}
    text = json.dumps(index, indent=1, ensure_ascii=False).encode("utf-8")
    write_atomically(cache_dir / "index.json", text)
    # A split of an earlier cache in this folder that this run did not write would not match.
    for old in cache_dir.glob("*.npz"):
        if old.stem not in splits:
            old.unlink()
    return index


def load_index(cache_dir: str | Path) -> dict:
    path = Path(cache_dir) / "index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorpusError(f"{path}: cannot read the cache index ({exc}); run sideman-train prepare") from None
    if index.get("format") != CACHE_FORMAT or index.get("version") != CACHE_VERSION:
        raise CorpusError(f"{path}: not a {CACHE_FORMAT} v{CACHE_VERSION} cache "
                          f"({index.get('format')} v{index.get('version')}); run sideman-train prepare again")
    return index


def load_cache(cache_dir: str | Path, split: str) -> CorpusSplit:
    """One split of a cache written by sideman-train prepare."""
    index = load_index(cache_dir)
    path = Path(cache_dir) / f"{split}.npz"
    if not path.is_file():
        raise CorpusError(f"{path}: no such split in the cache (has: {', '.join(sorted(index['splits']))})")
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in (*ARRAYS, "offsets")}
    records = [r for r in index["performances"] if r["split"] == split]
    if len(records) != len(arrays["offsets"]) - 1:
        raise CorpusError(f"{path}: {len(arrays['offsets']) - 1} performances but the index lists "
                          f"{len(records)}; run sideman-train prepare again")
    return CorpusSplit(split=split, performances=records, **arrays)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
