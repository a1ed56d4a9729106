"""`sideman` command line: run the box, its panel and service, panic, play a file, list ports and sessions.
(Benchmarks are `sideman-bench`, beside the package; evaluation and training are `sideman-train`.)"""

from __future__ import annotations

import argparse
import json
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
    from sideman.model.backends import BACKEND_NAMES

    parser = argparse.ArgumentParser(prog="sideman", description="A second jazz pianist in a box.")
    parser.add_argument("--version", action="version", version=f"sideman {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="play: thru to the synth, the AI on its own channel")
    _add_run_flags(run)
    run.add_argument("--panel", choices=["auto", "gpio", "sim", "none"], default="auto",
                     help="auto: the knobs and OLED when on a Jetson with the pin map (else none); "
                          "sim: the OLED in this terminal, keys as knobs (same as `sideman panel --sim`)")
    run.add_argument("--service", action="store_true",
                     help="run under systemd: READY after warm-up, watchdog pings from the engine, journald")

    panel = commands.add_parser("panel", help="the box with its front panel; --sim: the OLED in this terminal, keys as knobs")
    panel.add_argument("--sim", action="store_true", help="simulate the panel in the terminal (else: GPIO + OLED)")
    _add_run_flags(panel)

    from sideman.service.usb_gadget import add_gadget_parser

    add_gadget_parser(commands)

    panic = commands.add_parser("panic", help="all notes off on every channel of every MIDI output (and DIN)")
    panic.add_argument("--backend", choices=["auto", "alsa", "jack"], default="auto")
    panic.add_argument("--output", action="append", default=[], metavar="PATTERN",
                       help="only outputs whose names contain PATTERN (default: every hardware output)")
    panic.add_argument("--din", metavar="DEVICE", help="also the 5-pin DIN output on this serial device (auto: the pin map's UART)")

    play = commands.add_parser("play", help="a MIDI file plays the human part; write the duet (MIDI + piano roll)")
    play.add_argument("input", metavar="IN.mid")
    play.add_argument("--out", required=True, metavar="DUET.mid", help="the duet: tracks human and sideman")
    play.add_argument("--png", metavar="ROLL.png", help="also draw the duet as a piano roll")
    play.add_argument("--audio", metavar="DUET.wav", help="also render the duet through the built-in piano "
                      "(FluidSynth): .wav, .flac or .ogg; you on the left, the AI on the right")
    play.add_argument("--soundfont", metavar="PATH", help="the soundfont for --audio (default: the best installed)")
    play.add_argument("--track", action="append", default=[], metavar="NAME",
                      help="only these tracks of IN.mid are the human (default: all)")
    play.add_argument("--keep-at", type=float, action="append", default=[], metavar="SECONDS",
                      help="press 'keep that phrase' at this time of IN.mid (for --mode variation)")
    play.add_argument("--json", action="store_true", help="print the summary as JSON")
    play.add_argument("--voice", choices=["transformer", "markov"], default="transformer",
                      help="who answers (default: the transformer; the Markov voice when it cannot run)")
    _add_model_flags(play)
    _add_session_flags(play)
    add_control_flags(play)

    ports = commands.add_parser("ports", help="list MIDI ports")
    ports.add_argument("--backend", choices=["auto", "alsa", "jack"], default="auto")
    ports.add_argument("--json", action="store_true")

    sessions = commands.add_parser("sessions", help="list captured sessions")
    sessions.add_argument("--json", action="store_true")

    return parser


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["auto", "alsa", "jack"], default="auto",
                     help="auto: ALSA if /dev/snd/seq exists, else a running JACK server, else a private one")
    parser.add_argument("--input", action="append", default=[], metavar="PATTERN",
                     help="connect to input ports whose names contain PATTERN (default: a virtual port + hardware)")
    parser.add_argument("--output", action="append", default=[], metavar="PATTERN",
                     help="connect to output ports whose names contain PATTERN (default: a virtual port + hardware)")
    parser.add_argument("--autoconnect", metavar="REGEX", default=None,
                     help="which ports count as hardware to follow on hot-plug (default per backend)")
    parser.add_argument("--no-autoconnect", dest="autoconnect", action="store_const", const="",
                     help="never connect to hardware ports by ourselves")
    parser.add_argument("--din", metavar="DEVICE", help="5-pin DIN MIDI on a serial device (31250 baud), e.g. /dev/ttyTHS0 on a Jetson Orin; "
                             "auto: the UART in the pin map, when it exists (the service uses this)")
    parser.add_argument("--thru", choices=["auto", "box"], default="auto",
                     help="auto: on JACK your keyboard is connected straight to the synth and the box listens "
                          "beside it, while nothing needs filtering (no MIDI-mapped CC); box: every message "
                          "passes through the box")
    parser.add_argument("--voice", choices=["transformer", "markov", "echo", "none"], default="transformer",
                     help="transformer: the musician (default; the Markov voice stands in when the model cannot "
                          "run); markov: the Markov voice alone; echo: repeats you a bar later an octave up "
                          "(a plumbing check); none: thru only")
    _add_model_flags(parser)
    _add_session_flags(parser, saved=True)
    parser.add_argument("--clock-out", action="store_true", help="send MIDI clock at --tempo-bpm")
    parser.add_argument("--no-capture", dest="capture", action="store_false", help="do not save the session as MIDI")
    parser.add_argument("--output-latency", action="append", default=[], type=_parse_latency, metavar="PATTERN=MS",
                     help="latency compensation for outputs whose name contains PATTERN")
    _add_sound_flags(parser)
    add_control_flags(parser)


def _add_sound_flags(parser: argparse.ArgumentParser) -> None:
    from sideman.sound.builtin import (AUDIO_DRIVERS, DEFAULT_PERIOD_FRAMES, DEFAULT_PERIODS,
                                       SYNTH_CHOICES)

    parser.add_argument("--synth", choices=SYNTH_CHOICES, default=None,
                        help="the built-in piano (FluidSynth): auto (default on a laptop: while no hardware "
                             "synth is connected; off under --service, the box), builtin (always), none. "
                             "Saved in the box's settings")
    parser.add_argument("--soundfont", metavar="PATH", help="the built-in piano's soundfont (.sf2/.sf3; "
                        "default: the best installed, MuseScore_General or TimGM6mb)")
    parser.add_argument("--audio-driver", choices=AUDIO_DRIVERS, default="auto",
                        help="where the built-in piano sounds: auto (PipeWire or PulseAudio, else a running "
                             "JACK server, else ALSA), or one of them; file writes --audio-file")
    parser.add_argument("--audio-file", metavar="PATH", help="with --audio-driver file: record the built-in "
                        "piano live to this .wav/.flac/.ogg")
    parser.add_argument("--audio-period", type=int, default=DEFAULT_PERIOD_FRAMES, metavar="FRAMES",
                        help=f"audio period in frames at 48 kHz (default {DEFAULT_PERIOD_FRAMES}; raise it if "
                             "the sound crackles)")
    parser.add_argument("--audio-periods", type=int, default=DEFAULT_PERIODS, metavar="N",
                        help=f"audio periods in the output buffer (default {DEFAULT_PERIODS}: "
                             f"{DEFAULT_PERIOD_FRAMES * DEFAULT_PERIODS / 48:.1f} ms)")


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    from sideman.model.backends import BACKEND_NAMES

    parser.add_argument("--model-backend", choices=list(BACKEND_NAMES), default="auto",
                        help="where the transformer runs: auto (the exported graphs under onnxruntime, on its "
                             "TensorRT provider when it has one, else on the CPU; torch when they cannot run), "
                             "onnx, tensorrt, torch")
    parser.add_argument("--lookahead-s", type=float, default=1.5, metavar="SECONDS",
                        help="how far ahead of the music the transformer samples (default 1.5)")


def _add_session_flags(parser: argparse.ArgumentParser, saved: bool = False) -> None:
    from sideman.play.modes import MODES

    # For the box, a flag left out means "as saved last time" (settings.toml), else the default.
    parser.add_argument("--mode", choices=list(MODES), default=None if saved else "call-response",
                        help="call-response (default): answer your phrases; comp: chords under you; trade: alternate "
                             "--trade-bars bars; duet: play along; variation: vary the phrase you keep (--keep-cc)")
    parser.add_argument("--style", default=None if saved else "mehldau", metavar="STYLE",
                        help="a style ('mehldau', the default) or two for the --style-blend control ('mehldau,tatum')")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same input => same duet")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sideman.service.journal import setup_logging

    # journald under systemd (`sideman run --service`), plain lines on a terminal.
    setup_logging(service=getattr(args, "service", False), verbose=args.verbose)
    try:
        return COMMANDS[args.command](args)
    except PortError as exc:
        print(f"sideman: error: {exc}", file=sys.stderr)
        return 2


def cmd_run(args) -> int:
    from sideman import appliance

    return appliance.run(args, panel=args.panel, service=args.service)


def cmd_panel(args) -> int:
    from sideman import appliance

    return appliance.run(args, panel="sim" if args.sim else "gpio")


def cmd_gadget(args) -> int:
    from sideman.service.usb_gadget import cmd_gadget as gadget

    return gadget(args)


def cmd_panic(args) -> int:
    from sideman.ports.panic import panic_everything

    sent = panic_everything(args.backend, args.output, args.din)
    print(f"panic: all notes off sent to {', '.join(sent) or 'no output'}")
    return 0


def cmd_play(args) -> int:
    from pathlib import Path

    from sideman.midi_files import MidiFileError, read_performance
    from sideman.play.duet_files import write_duet_midi, write_piano_roll
    from sideman.play.simulate import play_performance
    from sideman.play.voices import make_voice

    try:
        human = read_performance(args.input, track_names=set(args.track) or None)
    except (MidiFileError, OSError) as exc:
        print(f"sideman: error: {exc}", file=sys.stderr)
        return 2
    if not human:
        print(f"sideman: error: {args.input}: no notes in the chosen tracks", file=sys.stderr)
        return 2
    controls = values_from_args(args)
    # Offline: time is simulated, so there is no step budget (a slow machine renders the same duet).
    session = make_voice(args.voice, args.mode, args.style, controls, args.seed,
                         warn=lambda text: print(f"sideman: warning: {text}", file=sys.stderr),
                         model_backend=args.model_backend, horizon_s=args.lookahead_s, step_budget_s=None)
    keep_cc = int(controls["keep_cc"])
    duet = play_performance(human, session, extra_messages=[(t, (0xB0, keep_cc, 127)) for t in args.keep_at])
    write_duet_midi(Path(args.out), duet.human, duet.ai, ai_channel=int(controls["ai_channel"]) - 1)
    summary = duet.summary()
    summary.update(input=str(args.input), out=str(args.out), seed=args.seed, style=args.style)
    if args.png:
        write_piano_roll(Path(args.png), duet.human, duet.ai, title=f"{Path(args.input).stem} / {args.mode}")
        summary["png"] = str(args.png)
    if args.audio:
        from sideman.play.duet_files import duet_messages
        from sideman.sound.render import render_audio
        from sideman.sound.soundfonts import SoundError

        ai_channel = int(controls["ai_channel"]) - 1
        try:
            seconds = render_audio(Path(args.audio), duet_messages(duet.human, duet.ai, ai_channel), ai_channel,
                                   soundfont=args.soundfont)
        except SoundError as exc:
            print(f"sideman: error: {exc} (the duet's MIDI is written: {args.out})", file=sys.stderr)
            return 2
        summary.update(audio=str(args.audio), audio_s=round(seconds, 2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        gaps = summary["response_gap_ms"]
        print(f"{summary['phrases_heard']} phrases heard, {summary['answers']} answers, "
              f"{summary['ai_notes']} AI notes; response gap median {gaps.get('median', '-')} ms -> {args.out}")
    return 0


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


COMMANDS = {"run": cmd_run, "panel": cmd_panel, "panic": cmd_panic, "gadget": cmd_gadget, "play": cmd_play, "ports": cmd_ports,
            "sessions": cmd_sessions}
