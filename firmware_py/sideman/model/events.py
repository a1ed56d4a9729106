"""The event codec every voice and every model shares: what one musical event is, and how its time,
duration and velocity are binned. The Markov voice and the transformer score the same events in the
same bins, so their bits per event compare.

An event is one note (onset, pitch, velocity, duration) or one sustain-pedal change. Encoded, it is
four small integers: (time since the previous event's onset, pitch token, duration, velocity), each
a bin index. Pedal changes use pitch tokens 128 (down) and 129 (up) with duration and velocity 0.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

HUMAN, AI = 0, 1

PEDAL_DOWN, PEDAL_UP = 128, 129
PITCH_TOKENS = 130

# Onset-to-onset times (s). Fine where chords spread and fast lines live, coarse for long rests.
TIME_BINS_S: tuple[float, ...] = (
    0.0, 0.01, 0.02, 0.03, 0.045, 0.06, 0.08, 0.1, 0.125, 0.15, 0.18, 0.21, 0.25, 0.3, 0.35,
    0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0)
# How long a key is held (s); pedal events use bin 0.
DURATION_BINS_S: tuple[float, ...] = (
    0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25,
    1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
VELOCITY_BINS = 16  # 8 velocity steps per bin; a bin decodes to its middle


@dataclass(frozen=True)
class Note:
    onset_s: float
    pitch: int
    velocity: int
    duration_s: float
    voice: int = HUMAN


@dataclass(frozen=True)
class Pedal:
    onset_s: float
    down: bool
    voice: int = HUMAN


Event = Note | Pedal
EncodedEvent = tuple[int, int, int, int]  # (time bin, pitch token, duration bin, velocity bin)


def _nearest(bins: Sequence[float], value: float) -> int:
    """Index of the bin nearest to value on a log scale (relative error matters for rhythm)."""
    i = bisect.bisect_left(bins, value)
    if i <= 0:
        return 0
    if i >= len(bins):
        return len(bins) - 1
    low, high = bins[i - 1], bins[i]
    if low <= 0:
        return i if value >= high / 2 else i - 1
    return i if math.log(value / low) > math.log(high / value) else i - 1


def time_bin(seconds: float) -> int:
    return _nearest(TIME_BINS_S, max(0.0, seconds))


def duration_bin(seconds: float) -> int:
    return _nearest(DURATION_BINS_S, max(DURATION_BINS_S[0], seconds))


def velocity_bin(velocity: int) -> int:
    return min(VELOCITY_BINS - 1, max(0, int(velocity) // 8))


def velocity_of_bin(index: int) -> int:
    return min(127, max(1, index * 8 + 4))


def sort_events(events: Iterable[Event]) -> list[Event]:
    """Time order; at equal times pedal-up first, then notes low to high, then pedal-down."""
    def key(e: Event):
        if isinstance(e, Pedal):
            return (e.onset_s, 0 if not e.down else 2, 0)
        return (e.onset_s, 1, e.pitch)
    return sorted(events, key=key)


def encode(events: Iterable[Event]) -> list[EncodedEvent]:
    out: list[EncodedEvent] = []
    previous = None
    for event in sort_events(events):
        dt = 0.0 if previous is None else event.onset_s - previous
        previous = event.onset_s
        if isinstance(event, Pedal):
            out.append((time_bin(dt), PEDAL_DOWN if event.down else PEDAL_UP, 0, 0))
        else:
            out.append((time_bin(dt), event.pitch, duration_bin(event.duration_s), velocity_bin(event.velocity)))
    return out


def decode(encoded: Iterable[EncodedEvent], start_s: float = 0.0, voice: int = AI) -> list[Event]:
    events: list[Event] = []
    t = start_s
    for i, (tb, token, db, vb) in enumerate(encoded):
        if i:
            t += TIME_BINS_S[tb]
        if token >= PEDAL_DOWN:
            events.append(Pedal(t, token == PEDAL_DOWN, voice))
        else:
            events.append(Note(t, token, velocity_of_bin(vb), DURATION_BINS_S[db], voice))
    return events
