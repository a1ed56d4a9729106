"""`sideman-train size-budget`: which networks the box can afford, measured before training one.

Each candidate network keeps the shipped model's inputs, style rows and context and changes its
width, depth, heads or feed-forward size. An untrained model of that shape is saved as a model
folder, exported to the box's ONNX graphs (`export_model`, parity included) and run through
`sideman-bench model`'s onnxruntime measure (its own process: ready time and memory are its own),
in rounds that alternate with the shipped model itself, the baseline measured in the same run. A
graph's cost per event depends on its tensors' shapes, not their values, so an untrained network
costs what a trained one of its shape will.

Each candidate is held to the box's limits: per-event p99 ≤ 5 ms, ready ≤ 5 s and peak RSS ≤ 400 MB
on onnxruntime, and shipped files (weights.pt and the ONNX graphs) ≤ 50 MB together (the largest
one is reported too: models/README.md reads the 50 MB per file). The p99 limit is held against the
worst round, since a 2-core machine's p99 moves by half from one run to the next.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from sideman.model.bundle import load_bundle, save_bundle
from sideman.model.model_files import ModelFileError, read_manifest
from sideman.model.transformer import JazzTransformer, ModelConfig
from sideman.paths import models_dir

LIMITS = {"event_p99_ms": 5.0, "ready_s": 5.0, "peak_rss_mb": 400.0, "shipped_mb": 50.0}
SIZE_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff", "head_hidden")


def add_commands(commands) -> None:
    p = commands.add_parser("size-budget", help="untrained networks of other sizes exported and timed on "
                            "onnxruntime beside the shipped model: which ones the box's limits allow")
    p.add_argument("--size", action="append", default=[], metavar="NAME=D_MODEL,LAYERS,HEADS,D_FF[,HEAD_HIDDEN]",
                   help="a candidate network (repeatable); head_hidden defaults to d_model")
    p.add_argument("--config", action="append", default=[], type=Path,
                   help="a fit config whose [model] is a candidate (repeatable)")
    p.add_argument("--model", type=Path, default=None, help="the shipped model folder (default: models/transformer)")
    p.add_argument("--rounds", type=int, default=3, help="measure rounds, each candidate once per round")
    p.add_argument("--events", type=int, default=2000, help="events generated per measure")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    p.set_defaults(run=run)


class SizeError(ValueError):
    pass


def parse_size(text: str) -> tuple[str, dict]:
    """'wide=192,4,4,3072' -> ('wide', {d_model: 192, n_layers: 4, n_heads: 4, d_ff: 3072, head_hidden: 192})."""
    name, sep, numbers = text.partition("=")
    try:
        values = [int(v) for v in numbers.split(",")] if sep else []
    except ValueError:
        values = []
    if not name or len(values) not in (4, 5) or min(values) <= 0:
        raise SizeError(f"--size {text!r}: want NAME=D_MODEL,LAYERS,HEADS,D_FF[,HEAD_HIDDEN] (positive whole numbers)")
    if values[0] % values[2]:
        raise SizeError(f"--size {text!r}: d_model {values[0]} is not a multiple of the {values[2]} heads")
    if len(values) == 4:
        values.append(values[0])
    return name, dict(zip(SIZE_FIELDS, values))


def config_size(path: Path) -> tuple[str, dict]:
    from sideman_train.config import load_config

    model = load_config(path)["model"]
    return path.stem, {k: int(model[k]) for k in SIZE_FIELDS}


def candidate_folder(shipped, size: dict, folder: Path, seed: int = 0) -> int:
    """An untrained model of this size with the shipped one's inputs, style rows and context, saved
    and exported as a model folder the box can open. Returns its parameter count."""
    from sideman_train.export import export_model

    config = ModelConfig.from_dict({**shipped.model.config.to_dict(), **size})
    torch.manual_seed(seed)
    model = JazzTransformer(config).eval()
    base_styles = [s for s in shipped.styles if not s.file]    # fine-tuned rows live in extra files
    save_bundle(folder, model, base_styles, shipped.default_style, training={"untrained": "sideman-train size-budget"})
    report = export_model(folder)
    if not report["passed"]:
        raise SizeError(f"{folder}: the exported graphs do not match PyTorch ({report['max_abs_diff']:.2e})")
    return model.parameter_count()


def shipped_files(folder: Path) -> list[int]:
    """Sizes of what a model folder puts in the image: its weights and the ONNX graphs its manifest
    lists (with their external data), as `sideman-train export` wrote them."""
    manifest = read_manifest(folder)
    names = {manifest["weights"]["file"]}
    for graph in manifest.get("graphs") or []:
        names.add(graph["onnx"])
        names.update(extra["file"] for extra in graph.get("external_data") or [])
    return [(folder / name).stat().st_size for name in sorted(names)]


def models_view(folder: Path, model_folder: Path) -> Path:
    """A models/ folder for SIDEMAN_MODELS_DIR: the shipped tables (links) with this transformer."""
    folder.mkdir(parents=True)
    for entry in models_dir().iterdir():
        if entry.name != "transformer":
            (folder / entry.name).symlink_to(entry.resolve())
    (folder / "transformer").symlink_to(model_folder.resolve())
    return folder


def measure(view: Path, events: int) -> dict:
    """One `sideman-bench model` measure on onnxruntime with this models/ folder."""
    from sideman_bench.model import run_model_bench

    before = os.environ.get("SIDEMAN_MODELS_DIR")
    os.environ["SIDEMAN_MODELS_DIR"] = str(view)
    try:
        row = run_model_bench(("onnx",), events)["backends"][0]
    finally:
        if before is None:
            os.environ.pop("SIDEMAN_MODELS_DIR", None)
        else:
            os.environ["SIDEMAN_MODELS_DIR"] = before
    if "error" in row:
        raise SizeError(f"{view}: the model bench failed: {row['error']}")
    return row


def summarize(name: str, size: dict, parameters: int, file_bytes: list[int], rows: list[dict],
              limits: dict = LIMITS) -> dict:
    """A candidate's rounds, held to the limits at its worst round. The 50 MB is held against all
    its shipped files together; `largest_file_mb` is there for models/README.md's per-file reading."""
    p99s = [r["event"]["p99_ms"] for r in rows]
    megabytes = round(sum(file_bytes) / 1e6, 1)
    worst = {"event_p99_ms": max(p99s), "ready_s": max(r["ready_s"] for r in rows),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in rows), "shipped_mb": megabytes}
    over = [key for key, limit in limits.items() if worst[key] > limit]
    return {"name": name, **size, "parameters": parameters, "shipped_mb": megabytes,
            "largest_file_mb": round(max(file_bytes, default=0) / 1e6, 1),
            "event_p50_ms": [r["event"]["p50_ms"] for r in rows], "event_p99_ms": p99s,
            "step_p99_ms": [r["step"]["p99_ms"] for r in rows],
            "ready_s": [r["ready_s"] for r in rows], "peak_rss_mb": [r["peak_rss_mb"] for r in rows],
            "fits": not over, "over": over}


def size_budget(candidates: list[tuple[str, dict]], model: Path | None = None, rounds: int = 3,
                events: int = 2000, say=print) -> dict:
    shipped_folder = Path(model) if model else models_dir() / "transformer"
    shipped = load_bundle(shipped_folder)
    work = Path(tempfile.mkdtemp(prefix="sideman-size-budget-"))
    try:
        entries = [("shipped", {k: getattr(shipped.model.config, k) for k in SIZE_FIELDS},
                    shipped.model.parameter_count(), shipped_folder)]
        for name, size in candidates:
            say(f"size-budget: {name}: building and exporting an untrained {size}")
            folder = work / "folders" / name
            entries.append((name, size, candidate_folder(shipped, size, folder), folder))
        views = {name: models_view(work / "views" / name, folder) for name, _, _, folder in entries}
        rows: dict[str, list[dict]] = {name: [] for name, *_ in entries}
        for round_ in range(rounds):
            for name, *_ in entries:
                rows[name].append(measure(views[name], events))
                say(f"size-budget: round {round_ + 1}/{rounds} {name}: event p99 "
                    f"{rows[name][-1]['event']['p99_ms']:.2f} ms")
        report = [summarize(name, size, parameters, shipped_files(folder), rows[name])
                  for name, size, parameters, folder in entries]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(report[0]["event_p50_ms"])
    for row in report:
        row["p50_vs_shipped"] = round(statistics.median(row["event_p50_ms"]) / base, 2)
    return {"bench": "size-budget", "definition": __doc__.split("\n\n")[0].replace("\n", " "),
            "cpu_count": os.cpu_count(), "rounds": rounds, "events": events, "limits": LIMITS,
            "baseline": "shipped", "candidates": report}


def run(args) -> int:
    try:
        candidates = [parse_size(s) for s in args.size] + [config_size(c) for c in args.config]
        if not candidates:
            raise SizeError("give at least one --size or --config")
        report = size_budget(candidates, args.model, args.rounds, args.events,
                             say=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError, ModelFileError) as exc:   # SizeError, a config's ConfigError, a bad --model
        print(f"sideman-train size-budget: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0
