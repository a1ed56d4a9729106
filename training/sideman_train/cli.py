"""`sideman-train` command line. Each subcommand lives in its own module and registers here
(each module has `add_commands(subparsers)`)."""

from __future__ import annotations

import argparse
import importlib
import sys

# In the order a new style goes through them: tables, corpus cache, training, evaluation, export,
# and the README's rendered sample duets; then the box's listening and answering measured on real music;
# and which network sizes the box can afford.
COMMAND_MODULES = ("markov_build", "prepare", "fit", "finetune", "evaluate", "export", "sample_duets",
                   "eval_listen", "eval_answers", "phrase_end_cues", "turn_cues", "size_budget")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sideman-train", description="Sideman's off-device pipeline: models trained, evaluated and exported; the box's listening and answers measured on real music.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"sideman_train.{name}").add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
