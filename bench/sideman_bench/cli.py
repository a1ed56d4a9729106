"""`sideman-bench`: the box measured from outside (JSON with medians and p99, each beside a baseline
measured in the same run), and the DIN parser's fuzz run. Offline tools: they live beside the box's
package and the .deb does not ship them.

    sideman-bench thru | soak | memory | reaction | duet | model | audio | panel | gaps | fuzz-din
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys

from sideman.ports.contract import PortError
from sideman.service.journal import setup_logging
from sideman_bench import din_fuzz


def build_parser() -> argparse.ArgumentParser:
    from sideman.model.backends import BACKEND_NAMES

    parser = argparse.ArgumentParser(prog="sideman-bench", description="Benchmarks of the Sideman box (JSON).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    benches = parser.add_subparsers(dest="bench", required=True)
    thru = benches.add_parser("thru", help="added thru latency vs a direct JACK connection, side by side")
    thru.add_argument("--json", action="store_true")
    thru.add_argument("--notes", type=int, default=None, help="note-ons (default 2000; with --answering 1008)")
    thru.add_argument("--period", type=int, default=64, help="JACK period in frames")
    thru.add_argument("--rate", type=int, default=48000)
    thru.add_argument("--answering", action="store_true",
                      help="phrases with rests so the AI answers: the transformer, then --voice none (baseline), "
                           "each on a fresh JACK server; lost player notes per path, added p50/p99, jitter")
    thru.add_argument("--voice", action="append", choices=["transformer", "markov", "none"], default=[],
                      help="with --answering: the voices to run (default transformer and none); with --flood: "
                           "the box's voice (default transformer)")
    thru.add_argument("--flood", action="store_true",
                      help="2,000 note-ons/s for 10 s into the box, beside a direct JACK connection: lost and "
                           "out-of-order messages per path, then whether the AI answers a phrase again")
    thru.add_argument("--voice-beside", choices=["transformer", "markov"], default=None,
                      help="with --answering: a second box with this voice, in its own process, hears the same "
                           "notes and answers them (measures the model running outside the thru's process)")
    thru.add_argument("--thru", choices=["auto", "box"], default="auto",
                      help="the box's thru: auto (patched by JACK) or box (through the box), as `sideman run --thru`")
    soak = benches.add_parser("soak", help="the box duets over JACK for --minutes (call-response, then each "
                                  "other mode): lost thru notes, stuck AI notes, RSS, CPU, answers, fall-backs")
    soak.add_argument("--minutes", type=float, default=60.0)
    soak.add_argument("--report-minutes", type=float, default=5.0, help="a report this often (on stderr)")
    soak.add_argument("--period", type=int, default=64, help="JACK period in frames")
    soak.add_argument("--rate", type=int, default=48000)
    soak.add_argument("--voice", choices=["transformer", "markov"], default="transformer")
    soak.add_argument("--box-log", metavar="FILE", help="write what the box says (its log) to FILE")
    soak.add_argument("--json", action="store_true")
    memory = benches.add_parser("memory", help="the soak's player into each voice on a simulated clock, every "
                                    "mode twice: the voice's own memory (RssAnon) each simulated minute, in minutes")
    memory.add_argument("--minutes-per-mode", type=float, default=6.0,
                        help="simulated minutes per mode (10 modes played: 6 is an hour's set)")
    memory.add_argument("--voice", action="append", choices=["transformer", "markov"], default=[],
                        help="repeatable (default: transformer, and markov as the baseline)")
    memory.add_argument("--json", action="store_true")
    reaction = benches.add_parser("reaction", help="the session's decision to answer -> first AI note on the wire (JACK)")
    reaction.add_argument("--json", action="store_true")
    reaction.add_argument("--phrases", type=int, default=100)
    reaction.add_argument("--period", type=int, default=64, help="JACK period in frames")
    reaction.add_argument("--rate", type=int, default=48000)
    reaction.add_argument("--voice", choices=["transformer", "markov"], default="transformer")
    reaction.add_argument("--model-backend", choices=list(BACKEND_NAMES), default="auto")
    duet_bench = benches.add_parser("duet", help="the box duetting over JACK with a line played in real time: "
                                                     "CPU, timing error, peak RSS, stuck notes (Markov side by side)")
    duet_bench.add_argument("--json", action="store_true")
    duet_bench.add_argument("--seconds", type=float, default=30.0)
    duet_bench.add_argument("--model-backend", choices=list(BACKEND_NAMES), default="auto")
    model_bench = benches.add_parser("model", help="the transformer per event on each backend (own process each): "
                                                       "ready time, event/step p50/p99, real-time factor, peak RSS")
    model_bench.add_argument("--json", action="store_true")
    model_bench.add_argument("--model-backend", action="append", choices=[b for b in BACKEND_NAMES if b != "auto"],
                             default=[], help="model backends to measure, repeatable (default: torch and onnx)")
    model_bench.add_argument("--events", type=int, default=2000)
    audio_bench = benches.add_parser("audio", help="the built-in piano: note-on -> sound per audio period "
                                                       "size (JACK dummy server), vs the soundfont's own attack")
    audio_bench.add_argument("--json", action="store_true")
    audio_bench.add_argument("--notes", type=int, default=40, help="notes per period size")
    audio_bench.add_argument("--period", type=int, action="append", default=[], metavar="FRAMES",
                             help="period sizes to measure (default 64, 128, 256, 512)")
    audio_bench.add_argument("--soundfont", metavar="PATH")
    panel_bench = benches.add_parser("panel", help="OLED frames drawn on change only vs at every tick, over a scripted minute")
    panel_bench.add_argument("--seconds", type=float, default=60.0)
    panel_bench.add_argument("--json", action="store_true")
    gaps = benches.add_parser("gaps", help="call-response gaps over a folder of phrase files (simulated), vs a 600 ms rule")
    gaps.add_argument("folder", metavar="DIR")
    gaps.add_argument("--limit", type=int, default=None)
    gaps.add_argument("--seed", type=int, default=0)
    gaps.add_argument("--json", action="store_true")
    gaps.add_argument("--voice", choices=["transformer", "markov"], default="transformer")
    gaps.add_argument("--model-backend", choices=list(BACKEND_NAMES), default="auto")
    fuzz = benches.add_parser("fuzz-din", help="the DIN byte parser on random and messy streams, checked against "
                              "mido: JSON summary, non-zero exit on any failure")
    din_fuzz.add_arguments(fuzz)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(service=False, verbose=args.verbose)
    # A crash in a native MIDI or JACK library prints every thread's Python stack: a benchmark runs
    # for minutes, and a bare "Segmentation fault" at the end says nothing about where.
    if not faulthandler.is_enabled():   # (pytest has its own)
        faulthandler.enable(file=sys.__stderr__)
    # SIGTERM (a timeout, a service manager) unwinds like Ctrl-C: every `finally` runs, so the
    # benchmark's JACK clients close and its server stops by itself. The kernel ends them anyway if
    # this process dies harder (processes.dies_with_parent), but a clean close leaves nothing in
    # JACK's shared memory either.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        result = run_bench(args)
    except PortError as exc:
        print(f"sideman-bench: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(result, int):   # fuzz-din printed its own summary
        return result
    print(json.dumps(result, indent=2) if args.json else _bench_text(result))
    return 0


def run_bench(args: argparse.Namespace) -> dict | int:
    if args.bench == "thru":
        from sideman_bench.thru import run_thru_bench

        if args.flood:
            from sideman_bench.thru import run_flood_bench

            result = run_flood_bench(voice=(args.voice or ["transformer"])[0], period=args.period, rate=args.rate,
                                     thru=args.thru)
        elif args.answering:
            from sideman_bench.thru import run_answering_thru_bench

            result = run_answering_thru_bench(notes=args.notes or 1008, period=args.period,
                                              rate=args.rate, voices=tuple(args.voice) or ("transformer", "none"),
                                              thru=args.thru, beside=args.voice_beside)
        else:
            result = run_thru_bench(notes=args.notes or 2000, period=args.period, rate=args.rate, thru=args.thru)
    elif args.bench == "soak":
        from sideman_bench.soak import run_soak_bench

        result = run_soak_bench(minutes=args.minutes, report_minutes=args.report_minutes, period=args.period,
                                rate=args.rate, voice=args.voice, box_log=args.box_log,
                                on_report=lambda report: print(json.dumps(report), file=sys.stderr, flush=True))
    elif args.bench == "memory":
        from sideman_bench.memory import run_memory_bench

        result = run_memory_bench(minutes_per_mode=args.minutes_per_mode,
                                  voices=tuple(args.voice) or ("transformer", "markov"))
    elif args.bench == "reaction":
        from sideman_bench.reaction import run_reaction_bench

        result = run_reaction_bench(phrases=args.phrases, period=args.period, rate=args.rate, voice=args.voice,
                                    model_backend=args.model_backend)
    elif args.bench == "duet":
        from sideman_bench.duet import run_duet_bench

        result = run_duet_bench(seconds=args.seconds, model_backend=args.model_backend)
    elif args.bench == "model":
        from sideman_bench.model import run_model_bench

        result = run_model_bench(tuple(args.model_backend) or ("torch", "onnx"), events=args.events)
    elif args.bench == "gaps":
        from pathlib import Path

        from sideman_bench.response_gaps import run_gap_bench

        result = run_gap_bench(Path(args.folder), limit=args.limit, seed=args.seed, progress=not args.json,
                               voice=args.voice, model_backend=args.model_backend)
    elif args.bench == "audio":
        from sideman_bench.audio import run_audio_bench

        result = run_audio_bench(tuple(args.period) or (64, 128, 256, 512), notes=args.notes, soundfont=args.soundfont)
    elif args.bench == "panel":
        from sideman_bench.panel import run_panel_bench

        result = run_panel_bench(seconds=args.seconds)
    else:   # fuzz-din
        result = din_fuzz.run(args)
    return result


def _bench_text(result: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())


if __name__ == "__main__":
    sys.exit(main())
