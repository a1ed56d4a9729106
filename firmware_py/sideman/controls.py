"""The one registry of user controls. Each is declared once; CLI flags, knobs, MIDI CC, presets and
OLED menus are generated from this list. Adding a control is one line.

The live values travel as one plain dict, name -> value, shared by the panel, the CLI and the
session (whatever moves it, the next notes hear it). Code that plays reads it with `value()`, so a
control's default is written here only."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Control:
    name: str
    default: float
    low: float
    high: float
    unit: str
    help: str
    integer: bool = False
    # How the AI plays, read live at every request: what presets hold and knobs/CCs move. The
    # others describe the rig (channel, latency, curves) and are read when the box starts.
    musical: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def clamp(self, value: float) -> float:
        value = min(self.high, max(self.low, value))
        return int(round(value)) if self.integer else float(value)


CONTROLS: tuple[Control, ...] = (
    Control("ai_channel", 2, 1, 16, "ch", "MIDI channel the AI plays on (the human's passes unchanged)", integer=True),
    Control("latency_ms", 0.0, 0.0, 200.0, "ms", "send AI notes this much early to make up for the synth's latency"),
    Control("velocity_gamma", 1.0, 0.3, 3.0, "", "AI velocity curve: <1 lifts soft notes, >1 tames them"),
    Control("velocity_floor", 1, 1, 127, "", "softest velocity the AI sends", integer=True),
    Control("velocity_ceiling", 127, 1, 127, "", "loudest velocity the AI sends", integer=True),
    Control("swing_strength", 0.0, 0.0, 1.0, "", "pull AI onsets onto swung eighths (0 = off, 1 = hard)"),
    Control("swing_ratio", 0.62, 0.5, 0.75, "", "where the off-beat eighth falls (0.5 straight, 0.67 triplet)"),
    Control("tempo_bpm", 120.0, 40.0, 300.0, "BPM", "tempo when no MIDI clock comes in (also clock-out tempo)"),
    # How the AI plays (read live by the session at every request).
    Control("temperature", 1.0, 0.2, 2.0, "", "adventure: <1 plays it safe, >1 takes chances", musical=True),
    Control("density", 0.5, 0.0, 1.0, "", "how busy the AI plays (0 sparse, 1 dense)", musical=True),
    Control("chord_bias", 0.6, 0.0, 1.0, "", "how strongly the AI's notes lean to the chord you play", musical=True),
    Control("answer_length", 1.0, 0.25, 2.0, "x", "answer length relative to your phrase (1 to 8 bars)", musical=True),
    Control("register_shift", 0, -24, 24, "st", "move the AI's register up or down", integer=True, musical=True),
    Control("style_blend", 0.0, 0.0, 1.0, "", "blend from the first style (0) to the second (1)", musical=True),
    Control("patience", 0.5, 0.0, 1.0, "", "how long a silence ends your phrase (0: 0.31 s, 0.5: 0.61 s, 1: 0.91 s; 0.2 s more after a short phrase)", musical=True),
    Control("echo", 0.5, 0.0, 1.0, "", "how much of your material an answer develops: your last motif, then your figures (0 none, 1 most)", musical=True),
    Control("left_hand", 0.5, 0.0, 1.0, "", "how busy an answer's left hand is (0 none: a bassist plays)", musical=True),
    Control("trade_bars", 4, 1, 16, "bars", "bars per turn when trading", integer=True, musical=True),
    Control("keep_cc", 80, 0, 127, "CC", "MIDI CC that keeps your last phrase for variation mode", integer=True),
    Control("program_channel", 16, 0, 16, "ch", "MIDI channel whose Program Changes recall presets (0: never)", integer=True),
)
BY_NAME = {c.name: c for c in CONTROLS}


MUSICAL = tuple(c.name for c in CONTROLS if c.musical)


def value(controls: Mapping[str, float], name: str) -> float | int:
    """A control's live value from a controls dict (its registered default where the dict lacks
    it): an int for integer controls, else a float."""
    control = BY_NAME[name]
    raw = controls.get(name, control.default)
    return int(raw) if control.integer else float(raw)


def defaults() -> dict[str, float]:
    return {c.name: c.default for c in CONTROLS}


def add_control_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("controls")
    for control in CONTROLS:
        unit = f" {control.unit}" if control.unit else ""
        # default None: a flag given on the command line is told apart from one left out, so it
        # can override the saved settings while the rest keep their saved values.
        group.add_argument(control.flag, dest=control.name, type=int if control.integer else float,
                           default=None,
                           help=f"{control.help} [{control.low:g}..{control.high:g}{unit}, default {control.default:g}]")


def values_from_args(args: argparse.Namespace, base: dict[str, float] | None = None) -> dict[str, float]:
    """Each control's value, clamped into its range: the flag when given, else `base` (saved
    settings), else the default."""
    values = defaults() if base is None else {**defaults(), **base}
    for c in CONTROLS:
        given = getattr(args, c.name, None)
        if given is not None:
            values[c.name] = given
    return {name: BY_NAME[name].clamp(value) for name, value in values.items() if name in BY_NAME}
