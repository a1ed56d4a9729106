"""What the panel's hands do, as events. The GPIO driver (and the terminal simulator's keys) produce
them; the panel controller turns them into control changes, menu moves and commands."""

from __future__ import annotations

from dataclasses import dataclass

ENCODERS = 4                 # numbered 0..3, left to right on the panel
BUTTONS = ("panic", "keep")  # panic/mute, keep that phrase


@dataclass(frozen=True)
class Turn:
    """An encoder moved `steps` detents (negative: counter-clockwise), after acceleration.
    `held`: its push switch was down while turning (the encoder's second function)."""
    encoder: int
    steps: int
    held: bool = False


@dataclass(frozen=True)
class Click:
    """An encoder's push switch went down and up again without any turning in between."""
    encoder: int


@dataclass(frozen=True)
class Press:
    """A button press: short ones on release; a long one (held for LONG_PRESS_S) as soon as the
    threshold passes while still held, so mute engages without waiting for the release."""
    button: str
    long: bool = False


LONG_PRESS_S = 0.8

PanelEvent = Turn | Click | Press
