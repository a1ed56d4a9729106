"""`sideman-train markov` (count a style's tables from a pianist's performances) and
`sideman-train markov-score` (bits per event of a table on held-out performances, next to the
order-0 unigram baseline stored in the same table).

Performances come from PiJAMA (pijama.csv: one pianist, one split) or from any folder of MIDI files.
Corpus MIDI is only read, never copied."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sideman.midi_files import MidiFileError, read_performance
from sideman.model.events import encode
from sideman.model.markov import MarkovError, MarkovModel, load_style, style_path
from sideman_train.corpus import CorpusError, Performance, add_corpus_options, list_performances
from sideman_train.markov_fit import fit_markov, save_markov


# ---------------------------------------------------------------------------------------------
# Finding performances

def chosen_performances(args) -> tuple[list[Performance], dict]:
    """The performances the --pijama/--pianist/--split or --folder options name, and a description."""
    if args.folder is not None:
        return list_performances(args.folder, pijama=False), {"data": args.folder.name}
    if not args.pianist:
        raise CorpusError("--pijama needs --pianist (e.g. --pianist \"Brad Mehldau\")")
    return (list_performances(args.pijama, args.pianist, args.split, pijama=True),
            {"data": "PiJAMA", "pianist": args.pianist, "split": args.split})


def encoded_performances(performances: list[Performance], progress: bool = True):
    """(performance, encoded events) for every readable, non-empty file; broken ones are skipped
    with a one-line message."""
    from tqdm import tqdm

    out, skipped = [], []
    bar = tqdm(performances, desc="reading", unit="file", disable=not progress, file=sys.stderr)
    for performance in bar:
        try:
            events = encode(read_performance(performance.path))
        except MidiFileError as exc:
            bar.write(f"skipped: {exc}", file=sys.stderr)
            skipped.append(performance.label)
            continue
        if not events:
            bar.write(f"skipped: {performance.path}: no notes or pedal", file=sys.stderr)
            skipped.append(performance.label)
            continue
        out.append((performance, events))
    return out, skipped


# ---------------------------------------------------------------------------------------------
# Commands

def add_commands(subparsers) -> None:
    train = subparsers.add_parser("markov", help="count a style's Markov tables from performances",
                                  description="Count a style's Markov tables from one pianist's "
                                              "performances (PiJAMA) or a folder of MIDI files.")
    _add_source_options(train, default_split="train")
    train.add_argument("--name", required=True, help="style name, e.g. mehldau (the file is NAME.npz)")
    train.add_argument("--out", type=Path, default=Path("models/markov"), help="folder for NAME.npz")
    train.add_argument("--max-order", type=int, default=5, help="longest pitch context (default 5)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)

    score = subparsers.add_parser("markov-score", help="bits per event of a Markov table on performances",
                                  description="Bits per event of a style table on held-out performances "
                                              "(total bits / total events), with the order-0 unigram "
                                              "baseline trained on the same data.")
    which = score.add_mutually_exclusive_group(required=True)
    which.add_argument("--style", help="a shipped style (models/markov/STYLE.npz)")
    which.add_argument("--table", type=Path, help="a table file")
    _add_source_options(score, default_split="val")
    score.add_argument("--json", action="store_true", help="print the result as JSON")
    score.add_argument("--per-file", action="store_true", help="include every file's figures")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(run=run_score)


def _add_source_options(parser: argparse.ArgumentParser, default_split: str) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pijama", type=Path, help="the PiJAMA folder (holds pijama.csv)")
    add_corpus_options(parser, "any folder of .mid/.midi files (recursive)",
                       "PiJAMA pianist, e.g. \"Brad Mehldau\"", source)
    parser.add_argument("--split", default=default_split, choices=("train", "val"),
                        help=f"PiJAMA split (default {default_split})")


def _read_chosen(args, command: str):
    """The performances the flags choose, encoded: (read, skipped, source), or None after
    saying why nothing can be read."""
    try:
        performances, source = chosen_performances(args)
    except CorpusError as exc:
        print(f"sideman-train {command}: {exc}", file=sys.stderr)
        return None
    read, skipped = encoded_performances(performances, progress=not args.quiet)
    if not read:
        print(f"sideman-train {command}: no readable performances", file=sys.stderr)
        return None
    return read, skipped, source


def run_train(args) -> int:
    started = time.perf_counter()
    found = _read_chosen(args, "markov")
    if found is None:
        return 2
    read, skipped, source = found
    model = fit_markov((events for _, events in read), name=args.name, max_order=args.max_order, progress=False)
    model.info.update(source)
    model.info["files"] = [p.label for p, _ in read]
    model.info["skipped"] = skipped
    path = args.out / f"{args.name}.npz"
    save_markov(model, path)
    seconds = time.perf_counter() - started
    events = sum(len(e) for _, e in read)
    print(f"{args.name}: {len(read)} files ({len(skipped)} skipped), {events} events, "
          f"{seconds:.1f} s, table {path} {path.stat().st_size / 1e6:.2f} MB")
    return 0


def run_score(args) -> int:
    try:
        model = load_style(args.style) if args.style else MarkovModel.load(args.table)
    except MarkovError as exc:
        print(f"sideman-train markov-score: {exc}", file=sys.stderr)
        return 2
    found = _read_chosen(args, "markov-score")
    if found is None:
        return 2
    read, skipped, source = found
    report = score_report(model, read)
    report.update({"style": model.name,
                   "table": str(args.table if args.table else style_path(args.style)),
                   **source, "skipped": skipped})
    if not args.per_file:
        report.pop("per_file")
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        where = f"{source['pianist']} {source['split']}" if "pianist" in source else source["data"]
        print(f"{model.name} on {where}: {report['files']} files, {report['events']} events: "
              f"{report['bits_per_event']:.3f} bits/event "
              f"(unigram baseline {report['baseline_bits_per_event']:.3f})")
        for row in report.get("per_file", []):
            print(f"  {row['bits_per_event']:7.3f} {row['baseline_bits_per_event']:7.3f} "
                  f"{row['events']:7d}  {row['file']}")
    return 0


def score_report(model: MarkovModel, read) -> dict:
    """Total bits / total events over all files, for the model and its unigram baseline."""
    bits = baseline = 0.0
    events = 0
    per_file = []
    for performance, encoded in read:
        file_bits = float(model.log2_probs(encoded).sum())
        file_baseline = float(model.unigram_log2_probs(encoded).sum())
        bits += file_bits
        baseline += file_baseline
        events += len(encoded)
        per_file.append({"file": performance.label, "events": len(encoded),
                         "bits_per_event": round(file_bits / len(encoded), 4),
                         "baseline_bits_per_event": round(file_baseline / len(encoded), 4)})
    return {"files": len(read), "events": events,
            "bits_per_event": round(bits / events, 4),
            "baseline_bits_per_event": round(baseline / events, 4),
            "baseline": "order-0 unigram per field, add-one smoothed, same training data",
            "per_file": per_file}

