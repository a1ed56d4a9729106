"""`sideman` command line: run the box, list ports and sessions, run benchmarks."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sideman import __version__
from sideman.controls import add_control_flags, values_from_args
from sideman.ports.contract import PortError


def _parse_latency(text: str) -> tuple[str, float]:
    pattern, sep, ms = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError("use PATTERN=MS, e.g. 'Nord=12'")
    try:
        return pattern, float(ms)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{ms!r} is not a number of milliseconds") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sideman", description="A second jazz pianist in a box.")
    parser.add_argument("--version", action="version", version=f"sideman {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="play: thru to the synth, the AI on its own channel")
    run.add_argument("--backend", choices=["auto", "alsa", "jack"], default="auto",
                     help="auto: ALSA if /dev/snd/seq exists, else a running JACK server, else a private one")
    run.add_argument("--input", action="append", default=[], metavar="PATTERN",
                     help="connect to input ports whose names contain PATTERN (default: a virtual port + hardware)")
    run.add_argument("--output", action="append", default=[], metavar="PATTERN",
                     help="connect to output ports whose names contain PATTERN (default: a virtual port + hardware)")
    run.add_argument("--autoconnect", metavar="REGEX", default=None,
                     help="which ports count as hardware to follow on hot-plug (default per backend)")
    run.add_argument("--no-autoconnect", dest="autoconnect", action="store_const", const="",
                     help="never connect to hardware ports by ourselves")
    run.add_argument("--din", metavar="DEVICE", help="5-pin DIN MIDI on a serial device (31250 baud), e.g. /dev/ttyTHS1")
    run.add_argument("--voice", choices=["echo", "none"], default="echo",
                     help="echo: repeats you a bar later an octave up (a plumbing check); none: thru only")
    run.add_argument("--clock-out", action="store_true", help="send MIDI clock at --tempo-bpm")
    run.add_argument("--no-capture", dest="capture", action="store_false", help="do not save the session as MIDI")
    run.add_argument("--output-latency", action="append", default=[], type=_parse_latency, metavar="PATTERN=MS",
                     help="latency compensation for outputs whose name contains PATTERN")
    add_control_flags(run)

    ports = commands.add_parser("ports", help="list MIDI ports")
    ports.add_argument("--backend", choices=["auto", "alsa", "jack"], default="auto")
    ports.add_argument("--json", action="store_true")

    sessions = commands.add_parser("sessions", help="list captured sessions")
    sessions.add_argument("--json", action="store_true")

    bench = commands.add_parser("bench", help="benchmarks (JSON with medians and p99)")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    thru = bench_kinds.add_parser("thru", help="added thru latency vs a direct JACK connection, side by side")
    thru.add_argument("--json", action="store_true")
    thru.add_argument("--notes", type=int, default=2000)
    thru.add_argument("--period", type=int, default=64, help="JACK period in frames")
    thru.add_argument("--rate", type=int, default=48000)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except PortError as exc:
        print(f"sideman: error: {exc}", file=sys.stderr)
        return 2


def cmd_run(args) -> int:
    from sideman.box import Box, BoxConfig

    config = BoxConfig(backend=args.backend, inputs=args.input, outputs=args.output,
                       autoconnect=args.autoconnect, din=args.din, voice=args.voice,
                       clock_out=args.clock_out, capture=args.capture,
                       output_latency_ms=dict(args.output_latency), controls=values_from_args(args))
    return Box(config).run_until_stopped()


def cmd_ports(args) -> int:
    from sideman.ports.rtmidi_ports import PortLister, choose_backend, is_own_port

    backend = choose_backend(args.backend, start_private_jack=False)
    lister = PortLister(backend)
    try:
        listing = {"backend": backend.name, "inputs": [n for n in lister.sources() if not is_own_port(n)],
                   "outputs": [n for n in lister.destinations() if not is_own_port(n)]}
    finally:
        lister.close()
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        print(f"backend: {listing['backend']}")
        for what in ("inputs", "outputs"):
            print(f"{what}:")
            for name in listing[what] or ["(none)"]:
                print(f"  {name}")
    return 0


def cmd_sessions(args) -> int:
    from sideman.capture import list_sessions
    from sideman.paths import sessions_dir

    found = list_sessions()
    if args.json:
        print(json.dumps([s.as_dict() for s in found], indent=2))
        return 0
    if not found:
        print(f"no sessions yet in {sessions_dir()}")
    for s in found:
        print(f"{s.path.name}  {s.seconds:7.1f} s  human {s.human_notes:5d} notes  sideman {s.ai_notes:5d} notes")
    return 0


def cmd_bench(args) -> int:
    if args.bench == "thru":
        from sideman.bench.thru import run_thru_bench

        result = run_thru_bench(notes=args.notes, period=args.period, rate=args.rate)
        print(json.dumps(result, indent=2) if args.json else _bench_text(result))
        return 0
    return 2


def _bench_text(result: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())


COMMANDS = {"run": cmd_run, "ports": cmd_ports, "sessions": cmd_sessions, "bench": cmd_bench}
