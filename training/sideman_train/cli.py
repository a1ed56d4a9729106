"""`sideman-train` command line. Each subcommand lives in its own module and registers here."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sideman-train", description="Sideman's off-device training pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)
    from sideman_train import markov_build

    markov_build.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
