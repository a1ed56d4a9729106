"""What `fit` trains on: the corpus cache split into style rows (one per pianist with enough
recordings, one shared "others" row, spare rows for fine-tuned styles), the window sampler over the
train split, and fixed validation windows.

Style rows. Row 0 is "others": every pianist with fewer than data.min_files_per_style train
recordings, and the unconditioned style (style dropout trains windows of any pianist on it, so a
new or unknown player has a sensible default). Pianists listed in data.exclude_artists are left out
of training altogether (that is how a fine-tuning test keeps a pianist the base model never heard).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sideman.model.bundle import Style
from sideman.model.conditioning import MODEL_MODES
from sideman_train.corpus import CorpusSplit, load_cache
from sideman_train.duets import WindowSampler

OTHERS = "others"


def style_name(artist: str, taken: set[str]) -> str:
    """A short knob name: the last name in lower case ("Brad Mehldau" → "mehldau"), the full name
    when two pianists share a last name."""
    ascii_name = unicodedata.normalize("NFKD", artist).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_name.lower())
    if not words:
        words = ["pianist"]
    name = words[-1]
    if name in taken or name == OTHERS:
        name = "-".join(words)
    while name in taken:
        name += "-2"
    return name


def style_rows(train: CorpusSplit, config: dict) -> list[Style]:
    data = config["data"]
    excluded = set(data["exclude_artists"])
    counts: dict[str, int] = {}
    for record in train.performances:
        if record["artist"] not in excluded:
            counts[record["artist"]] = counts.get(record["artist"], 0) + 1
    styles = [Style(OTHERS, "", 0)]
    taken = {OTHERS}
    for artist, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if n >= data["min_files_per_style"]:
            name = style_name(artist, taken)
            taken.add(name)
            styles.append(Style(name, artist, len(styles), info={"train_files": n}))
    return styles


def style_of_artist(styles: list[Style]) -> dict[str, int]:
    return {s.artist: s.row for s in styles if s.artist}


@dataclass
class TrainingData:
    styles: list[Style]
    n_style_rows: int              # styles + spare rows (the model's style table)
    train: CorpusSplit
    train_style: np.ndarray        # style row per train performance
    train_weight: np.ndarray       # sampling weight per train performance (0 = excluded)
    validation: dict[str, tuple[CorpusSplit, np.ndarray, np.ndarray]]  # name → (split, performances, rows)
    selection_split: str
    config: dict

    @property
    def train_events(self) -> int:
        return int((self.train.n_events * (self.train_weight > 0)).sum())

    @property
    def train_performances(self) -> int:
        return int((self.train_weight > 0).sum())

    def sampler(self, rng: np.random.Generator) -> "StyleDropoutSampler":
        data = self.config["data"]
        probs = np.array([data["mode_probs"].get(m, 0.0) for m in MODEL_MODES], dtype=np.float64)
        augment = data["augment"]
        inner = WindowSampler(self.train, self.train_style, data["context"], rng,
                              perf_weight=self.train_weight, mode_probs=probs / probs.sum(),
                              augment_cfg={"transpose": tuple(augment["transpose"]) if augment["transpose"] else None,
                                           "stretch": tuple(augment["stretch"]) if augment["stretch"] else None,
                                           "velocity_jitter": augment["velocity_jitter"]},
                              listening=data["listening"])
        return StyleDropoutSampler(inner, data["style_dropout"], rng)


class StyleDropoutSampler:
    """Windows from the train split; a share of them lose their pianist (row 0, "others")."""

    def __init__(self, inner: WindowSampler, dropout: float, rng: np.random.Generator):
        self.inner, self.dropout, self.rng = inner, dropout, rng

    def batch(self, batch_size: int) -> dict[str, np.ndarray]:
        batch = self.inner.batch(batch_size)
        drop = self.rng.random(batch_size) < self.dropout
        batch["style"] = np.where(drop, 0, batch["style"])
        batch["style_dropped"] = drop   # these windows' row is not their pianist's (style_contrast skips them)
        return batch


def training_data(cache: Path, config: dict, rng: np.random.Generator) -> TrainingData:
    data = config["data"]
    train = load_cache(cache, "train")
    styles = style_rows(train, config)
    rows = style_of_artist(styles)
    excluded = set(data["exclude_artists"])
    train_style = np.array([rows.get(r["artist"], 0) for r in train.performances], dtype=np.int64)
    weight = np.array([0.0 if r["artist"] in excluded else float(data["artist_weight"].get(r["artist"], 1.0))
                       for r in train.performances])
    val = load_cache(cache, "val")
    val_rows = np.array([rows.get(r["artist"], 0) for r in val.performances], dtype=np.int64)
    keep = np.array([r["artist"] not in excluded for r in val.performances])
    validation = {"all": (val, np.nonzero(keep)[0], val_rows)}
    focus = data["val_focus_artist"]
    if focus:
        chosen = np.nonzero(np.array([r["artist"] == focus for r in val.performances]))[0]
        if chosen.size:
            validation[style_name(focus, set())] = (val, chosen, val_rows)
    return TrainingData(styles, len(styles) + data["spare_styles"], train, train_style, weight,
                        validation, "all", config)


def ensure_cache(cache: Path, pijama: Path | None, say=print) -> Path:
    """The corpus cache, built from PiJAMA first when it is not there yet (so one command trains)."""
    cache = Path(cache)
    if (cache / "index.json").is_file():
        return cache
    if pijama is None:
        raise SystemExit(f"sideman-train fit: no corpus cache at {cache}; give --pijama DIR "
                         f"(or run sideman-train prepare --pijama DIR --out {cache})")
    import argparse
    import os

    from sideman_train.prepare import run_prepare
    say(f"no corpus cache at {cache}: preparing it from {pijama}")
    args = argparse.Namespace(pijama=Path(pijama), folder=None, pianist=None, out=cache,
                              jobs=os.cpu_count() or 1, limit=None, quiet=False)
    if run_prepare(args) != 0:
        raise SystemExit(f"sideman-train fit: preparing {cache} from {pijama} failed")
    return cache
