"""Steering: the values from the control registry that shape what the AI plays, read at each request
so every knob acts on the next notes."""

from __future__ import annotations

from dataclasses import dataclass

from sideman.controls import value as control_value


@dataclass(frozen=True)
class Steering:
    styles: tuple[tuple[str, float], ...] = (("mehldau", 1.0),)  # style blend: (style, weight)
    temperature: float = 1.0
    density: float = 0.5
    chord_bias: float = 0.6
    answer_length: float = 1.0
    register_shift: int = 0
    echo: float = 0.5              # how much of the call's last motif an answer develops
    left_hand: float = 0.5         # how busy an answer's left hand is (0: none)

    @classmethod
    def from_controls(cls, controls: dict, styles: tuple[str, ...] = ("mehldau",)) -> "Steering":
        """styles: the one or two styles the style_blend control moves between."""
        blend = control_value(controls, "style_blend")
        if len(styles) == 2:
            mix = ((styles[0], 1.0 - blend), (styles[1], blend))
        else:  # one style, or more than the control can move between: an even mix
            mix = tuple((name, 1.0 / len(styles)) for name in styles)
        return cls(styles=tuple((name, w) for name, w in mix if w > 0),
                   temperature=control_value(controls, "temperature"),
                   density=control_value(controls, "density"),
                   chord_bias=control_value(controls, "chord_bias"),
                   answer_length=control_value(controls, "answer_length"),
                   register_shift=control_value(controls, "register_shift"),
                   echo=control_value(controls, "echo"),
                   left_hand=control_value(controls, "left_hand"))


def parse_style(text: str) -> tuple[tuple[str, float], ...]:
    """'mehldau' or a blend 'mehldau:0.7,evans:0.3' -> normalised (style, weight) pairs."""
    pairs = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        if not name:
            raise ValueError(f"empty style name in {text!r}")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"style weight {weight!r} in {text!r} is not a number") from None
        if w < 0:
            raise ValueError(f"style weight for {name} must be ≥ 0")
        pairs.append((name, w))
    total = sum(w for _, w in pairs)
    if total <= 0:
        raise ValueError(f"style blend {text!r} has no weight")
    return tuple((name, w / total) for name, w in pairs)
