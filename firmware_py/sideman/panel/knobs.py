"""What each of the four encoders does: a first function when turned, a second when turned with
the push switch held. Targets are control names from the registry, plus "mode" (steps through the
session modes) and "partner" (the second style, the far end of the blend knob)."""

from __future__ import annotations

from dataclasses import dataclass

from sideman.controls import BY_NAME
from sideman.play.modes import MODES


@dataclass(frozen=True)
class Function:
    label: str    # what the OLED shows (5 letters fit under a knob)
    target: str   # control name, "mode" or "partner"


@dataclass(frozen=True)
class Knob:
    turn: Function
    held: Function


KNOBS: tuple[Knob, ...] = (
    Knob(Function("BLEND", "style_blend"), Function("STYLB", "partner")),
    Knob(Function("MODE", "mode"), Function("BARS", "trade_bars")),
    # patience where the hand already is for "how the AI plays"; chord bias stays on MIDI CC and presets
    Knob(Function("ADV", "temperature"), Function("WAIT", "patience")),
    Knob(Function("DENS", "density"), Function("LEN", "answer_length")),
)

STEPS_PER_RANGE = 40   # a float control crosses its range in 40 detents (about 2 turns)


def step_control(name: str, value: float, steps: int) -> float:
    """`steps` detents from `value`: whole units for integer controls, 1/40 of the range for the rest."""
    control = BY_NAME[name]
    if control.integer:
        return control.clamp(value + steps)
    step = (control.high - control.low) / STEPS_PER_RANGE
    return control.clamp(round(value + steps * step, 4))


def format_value(name: str, value) -> str:
    if name in ("mode", "partner"):
        return MODES[value].knob_label if value in MODES else str(value)[:5]
    control = BY_NAME[name]
    return f"{int(value)}" if control.integer else f"{value:.2f}"

