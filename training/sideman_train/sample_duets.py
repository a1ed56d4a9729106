"""`sideman-train sample-duets`: duets you can listen to. Human parts written in code play through
`sideman play` (the live session, simulated time) in three modes; each duet is written as MIDI, a
piano roll and audio through the built-in piano (you on the left, Sideman on the right)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sideman.cli import main as sideman
from sideman.play.duet_files import write_duet_midi
from sideman_train.written_parts import blues_call, ii_v_i_line, slow_melody

# name -> (mode, the human part): room after each call for the answer.
SAMPLES = {
    "call-response": ("call-response", lambda: ii_v_i_line(0.5) + blues_call(9.0) + ii_v_i_line(17.0)),
    "comping": ("comp", lambda: slow_melody(0.5) + slow_melody(9.0, beat_s=0.45)),
    "duet": ("duet", lambda: slow_melody(0.5) + ii_v_i_line(9.0)),
}


def add_commands(commands) -> None:
    p = commands.add_parser("sample-duets", help="render sample duets (MIDI, piano roll, audio) from parts written in code")
    p.add_argument("--out", type=Path, default=Path("docs/samples"), help="folder (default docs/samples)")
    p.add_argument("--voice", choices=["transformer", "markov"], default="transformer")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--format", choices=["ogg", "flac", "wav"], default="ogg", help="audio format (default ogg)")
    p.set_defaults(run=run)


def run(args) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name, (mode, part) in SAMPLES.items():
            human = Path(scratch) / f"{name}.mid"  # the piano roll is titled after it
            write_duet_midi(human, part(), [])
            base = args.out / name
            code = sideman(["play", str(human), "--mode", mode, "--voice", args.voice, "--seed", str(args.seed),
                            "--out", str(base.with_suffix(".mid")), "--png", str(base.with_suffix(".png")),
                            "--audio", str(base.with_suffix(f".{args.format}"))])
            if code != 0:
                print(f"sideman-train sample-duets: {name} failed", file=sys.stderr)
                return code
    return 0
