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
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # the vectorised codec's annotations (numpy is imported where it is used)
    import numpy as np

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


# ---------------------------------------------------------------------------------------------
# Vectorised codec (numpy): the same bins as time_bin / duration_bin / velocity_bin, for whole
# arrays at once (training windows). Equal to the scalar functions for every value: the few values
# that sit on a bin boundary to within rounding are decided by the scalar rule itself.

def _nearest_array(bins: Sequence[float], values) -> "np.ndarray":
    import numpy as np

    edges = np.asarray(bins, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    i = np.searchsorted(edges, v, side="left")  # == bisect_left
    out = np.clip(i, 0, len(edges) - 1).astype(np.int64)
    inner = (i > 0) & (i < len(edges))
    if not inner.any():
        return out
    idx = np.nonzero(inner)
    vi, ii = v[idx], i[idx]
    low, high = edges[ii - 1], edges[ii]
    with np.errstate(all="ignore"):  # low = 0 (the first time bin) and tiny values
        up_log = np.log(vi / low)
        down_log = np.log(high / vi)
        up = np.where(low <= 0, vi >= high / 2, up_log > down_log)
        # Near-ties of the log rule: numpy's log may differ from math.log in the last bit, so let
        # the scalar rule decide those (a handful of values at most).
        close = (low > 0) & (np.abs(up_log - down_log) <= 1e-12)
    chosen = np.where(up, ii, ii - 1)
    for k in np.nonzero(close)[0]:
        chosen[k] = _nearest(bins, float(vi[k]))
    out[idx] = chosen
    return out


def _floor_at(values, floor: float):
    """max(floor, x) element by element, as Python's max does it (nan becomes the floor)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return np.where(v > floor, v, floor)


def time_bins(seconds) -> "np.ndarray":
    """time_bin for an array (int64, same shape)."""
    return _nearest_array(TIME_BINS_S, _floor_at(seconds, 0.0))


def duration_bins(seconds) -> "np.ndarray":
    """duration_bin for an array (int64, same shape)."""
    return _nearest_array(DURATION_BINS_S, _floor_at(seconds, DURATION_BINS_S[0]))


def velocity_bins(velocity) -> "np.ndarray":
    """velocity_bin for an array (int64, same shape); floats are truncated like int()."""
    import numpy as np

    v = np.asarray(velocity)
    if v.dtype.kind == "f":
        v = np.trunc(v)
    v = v.astype(np.int64)
    return np.clip(v // 8, 0, VELOCITY_BINS - 1)
