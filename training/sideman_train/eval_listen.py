"""`sideman-train eval-listen DIR`: how well the box hears, on a POP909-like folder: chord naming
(`eval_chords`, against chord_midi.txt) and beat tracking (`eval_beats`, against beat_midi.txt),
each beside its simple baseline (`listen_baselines`). One JSON report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sideman_train import eval_beats, eval_chords


def add_commands(commands) -> None:
    listen = commands.add_parser("eval-listen", help="chord and beat accuracy on a POP909-like folder (JSON)")
    listen.add_argument("folder", metavar="DIR", type=Path,
                        help="subfolders with one .mid, chord_midi.txt and beat_midi.txt")
    listen.add_argument("--limit", type=int, default=None, help="only the first N songs")
    listen.add_argument("--json", action="store_true", help="no progress lines on stderr")
    listen.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"sideman-train: error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    beats = eval_beats.evaluate_folder(args.folder, limit=args.limit, progress=not args.json)
    beats.pop("per_song", None)  # `python -m sideman_train.eval_beats DIR --json` keeps it
    result = {"folder": str(args.folder),
              "chords": eval_chords.evaluate_folder(args.folder, limit=args.limit, progress=not args.json),
              "beats": beats}
    print(json.dumps(result, indent=2))
    return 0
