"""`sideman-train prepare`: parse a corpus once into the transformer's cache (see corpus.py).

    sideman-train prepare (--pijama DIR | --folder DIR [--pianist NAME]) --out CACHE_DIR [--jobs N] [--limit N]

Files are parsed in parallel (--jobs processes, default: every CPU). Broken, empty and missing files
and exact duplicates of an earlier performance are skipped with a one-line message each; the run
ends with a summary (files, kept, skipped by reason, events and hours per split)."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path

from sideman_train.corpus import (CorpusError, add_corpus_options, index_folder, index_pijama, log,
                                  parse_record, write_cache)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="parse a corpus once into the transformer's cache",
                              description="Parse every performance of PiJAMA or a folder of MIDI files "
                                          "into CACHE_DIR/{split}.npz and index.json (for sideman-train fit).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pijama", type=Path, help="the PiJAMA folder (holds pijama.csv)")
    add_corpus_options(p, "any folder of .mid/.midi files (recursive)",
                       "pianist of every file of --folder (default: each file's folder name)", source)
    p.add_argument("--out", type=Path, required=True, help="cache folder (written atomically)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes (default: CPUs)")
    p.add_argument("--limit", type=int, help="only the first N files of the index (a quick run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    started = time.perf_counter()
    try:
        if args.pijama is not None:
            if args.pianist:
                raise CorpusError("--pianist goes with --folder (PiJAMA names its pianists)")
            root, records = args.pijama, index_pijama(args.pijama)
            source = {"kind": "pijama", "path": str(args.pijama.resolve())}
        else:
            root, records = args.folder, index_folder(args.folder, args.pianist)
            source = {"kind": "folder", "path": str(args.folder.resolve()), "artist": args.pianist}
    except CorpusError as exc:
        log(f"sideman-train prepare: {exc}")
        return 2
    if args.limit is not None:
        records = records[:max(0, args.limit)]
    jobs = max(1, min(args.jobs, len(records) or 1))
    work = [(str(root), r) for r in records]

    kept: list[tuple[dict, dict]] = []
    skipped: Counter = Counter()
    seen: dict[str, str] = {}  # performance hash -> path of the first one
    bar = tqdm(total=len(work), desc="prepare", unit="file", disable=args.quiet, dynamic_ncols=True)

    def take(record: dict, result: dict) -> None:
        if not result["ok"]:
            skipped[result["reason"]] += 1
            bar.write(f"skipped ({result['reason']}): {record['path']}: {result['detail']}")
            return
        first = seen.get(result["perf_hash"])
        if first is not None:
            skipped["duplicate"] += 1
            bar.write(f"skipped (duplicate): {record['path']}: same performance as {first}")
            return
        seen[result["perf_hash"]] = record["path"]
        arrays = result["arrays"]
        end = float((arrays["onset_s"] + arrays["duration_s"]).max()) if arrays["pitch"].size else 0.0
        kept.append(({**record, "n_events": int(arrays["pitch"].size), "duration_s": round(end, 3),
                      "sha1": result["sha1"]}, arrays))

    try:
        if jobs == 1:
            for job in work:
                take(job[1], parse_record(job))
                bar.update()
        else:
            # Results come back in index order, so the kept list (and which of two duplicates is
            # kept: the first) does not depend on --jobs.
            # Not "fork": a fork of a process with threads (onnxruntime's, torch's, a test
            # runner's) can copy a held lock into the child, which then waits forever (seen
            # once in a fresh-clone test run). A fresh interpreter per worker cannot.
            with multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn").Pool(jobs) as pool:
                for job, result in zip(work, pool.imap(parse_record, work, chunksize=4)):
                    take(job[1], result)
                    bar.update()
    finally:
        bar.close()

    if not kept:
        log(f"sideman-train prepare: no readable performances among {len(records)} files; nothing written")
        return 1
    index = write_cache(args.out, source, kept)
    seconds = time.perf_counter() - started
    n_skipped = sum(skipped.values())
    reasons = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "none"
    print(f"prepare: {len(records)} files, {len(kept)} kept, {n_skipped} skipped ({reasons}) "
          f"in {seconds:.1f} s -> {args.out}")
    for split, s in index["splits"].items():
        print(f"  {split}: {s['performances']} performances, {s['events']} events, {s['hours']:.1f} h")
    return 0
