"""What the OLED shows, as plain values. The controller builds these from the box's state; the
screens module draws them with luma. Views compare equal when the picture would be the same, which
is how the display redraws on change only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnobView:
    label: str        # short, e.g. "BLEND", "MODE", "ADV", "DENS"
    value: str        # formatted, e.g. "0.30", "comp", "1.2"
    held: bool = False  # push is down: the label/value are the second function's


@dataclass(frozen=True)
class HomeView:
    mode: str                      # "call-response", "comp", ...
    styles: tuple[str, ...]        # ("mehldau",) or ("mehldau", "tatum")
    blend: float                   # 0..1 toward styles[1]
    tempo_bpm: float | None        # None while no beat is tracked
    chord: str | None              # "Dm7", None when nothing sounds
    activity: str                  # "listening", "answering", "comping", "trading", "muted", "idle"
    planned_notes: int             # AI notes queued ahead
    voice: str                     # "markov", "transformer", "echo", ...
    knobs: tuple[KnobView, ...] = ()   # the four encoders' current functions, left to right
    badge: str | None = None       # a short persistent warning, e.g. "MARKOV FALLBACK", "NO OUTPUT"


@dataclass(frozen=True)
class MenuView:
    title: str
    items: tuple[str, ...]
    selected: int
    values: tuple[str, ...] = ()   # optional right-aligned value per item
    hint: str = ""                 # bottom line, e.g. "turn: choose  push: ok"


@dataclass(frozen=True)
class AlertView:
    title: str                     # e.g. "PORT LOST"
    lines: tuple[str, ...] = ()
    level: str = "warning"         # "info", "warning", "error"


View = HomeView | MenuView | AlertView
