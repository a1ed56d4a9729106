"""What the scheduler does to an AI note before it sounds: velocity shaping and swing."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VelocityShape:
    """Maps the voice's velocity onto what suits the synth: gamma < 1 lifts soft notes,
    gamma > 1 tames them; floor/ceiling clamp the range the synth is asked to play."""

    gamma: float = 1.0
    floor: int = 1
    ceiling: int = 127

    def __call__(self, velocity: int) -> int:
        if velocity <= 0:
            return 0  # a note-on with velocity 0 is a note-off: leave it one
        x = (min(velocity, 127) - 1) / 126.0
        return max(1, min(127, round(self.floor + (self.ceiling - self.floor) * x ** self.gamma)))


@dataclass(frozen=True)
class SwingGrid:
    """Quantises onsets to swung eighth notes on a beat grid.

    `swing` is where the off-beat eighth falls inside the beat (0.5 straight, 0.667 triplet swing);
    `strength` 0..1 pulls the onset part of the way (1 = hard quantise).
    """

    beat_origin_ns: int
    beat_ns: int
    swing: float = 0.62
    strength: float = 1.0

    def quantise(self, t_ns: int) -> int:
        beats = (t_ns - self.beat_origin_ns) / self.beat_ns
        whole = math.floor(beats)
        frac = beats - whole
        target = min((0.0, self.swing, 1.0), key=lambda pos: abs(pos - frac))
        return t_ns + round(self.strength * (target - frac) * self.beat_ns)
