"""The front panel's inputs on the Jetson header: four push encoders and two buttons -> PanelEvents.

Real-world failure modes this is built around:

* Jetson.GPIO runs edge callbacks on one Python thread, late and sometimes not at all (a fast turn can
  change a contact twice before the thread reads it, and `input()` inside a callback may show a
  stale or an already later level). So the quadrature decoder never trusts *which* pin fired: on every callback it
  reads both A and B and walks a state-transition table. A jump where both bits changed means an edge
  was missed; see `_move` for how that is resolved. `poll()` also re-reads every pin, so an edge whose
  callback never came is picked up within one poll period. Tolerance: one lost edge per detent gives
  the exact count; two consecutive lost edges alias to a step back, so that detent is lost (never
  counted the wrong way).
* Contacts bounce. Encoder contact bounce is harmless to the table (A toggling while B is steady is
  +1 -1 +1 ... and nets out), and only whole detents are reported, counted when the encoder is back in
  its detent (rest) state. Switches are debounced by time: a level counts once it has been stable for
  `debounce_s`, confirmed either on the next edge or in `poll()`, against the injected clock.
* Jetson.GPIO's own `bouncetime` is not used: it drops every edge within N ms of the last one, which
  for a quadrature signal throws away real movement, and for a switch can drop the settling edge.

Threads: GPIO callbacks only update state under `self._lock` and queue events; **`emit` is only ever
called from `poll()`**, i.e. on the panel loop's thread (outside the lock), so the controller needs no
locking of its own. Call `poll()` about every 5 ms (POLL_INTERVAL_S).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sideman.panel.events import BUTTONS, LONG_PRESS_S, Click, PanelEvent, Press, Turn
from sideman.panel.pin_map import EncoderPins, PinMap

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.005

# Acceleration: (interval between successive detents in the same direction, multiplier), checked in
# order. A slow, deliberate turn (>= 100 ms per detent) is exact; a quick flick (~10+ detents/s)
# doubles, a spin (25+ detents/s) quadruples: a 0..127 sweep is about 1.5 turns of a 24-detent knob.
DEFAULT_ACCEL: tuple[tuple[float, int], ...] = ((0.040, 4), (0.100, 2))

# Quadrature state = (A << 1) | B as read (active low: a closed contact reads 0). Clockwise, A leads:
# 11 -> 01 -> 00 -> 10 -> 11 (swap a and b in the pin map if a knob counts backwards). Position of
# each state in that cycle:
_CYCLE = (0b11, 0b01, 0b00, 0b10)
_POS = {state: i for i, state in enumerate(_CYCLE)}
REST_STATE = 0b11   # both contacts open in the detent (the usual full-cycle-per-detent encoders)


def _transition(old: int, new: int) -> int | None:
    """Quarter steps from `old` to `new`: 0, +1 (clockwise), -1, or None when both bits changed."""
    diff = (_POS[new] - _POS[old]) % 4
    return {0: 0, 1: +1, 3: -1}.get(diff)


# The transition table, precomputed: _QUAD[old][new].
_QUAD = [[_transition(old, new) for new in range(4)] for old in range(4)]


class GpioUnavailable(RuntimeError):
    """Jetson.GPIO cannot be used here (not a Jetson, not installed, or no permission)."""


def open_jetson_gpio():
    """Import Jetson.GPIO lazily (it probes the board and sysfs at import time)."""
    try:
        import Jetson.GPIO as GPIO  # type: ignore[import-not-found]
    except ImportError as e:
        raise GpioUnavailable("Jetson.GPIO is not installed (pip install 'sideman[box]'); the front "
                              "panel's GPIO driver only runs on a Jetson — use the terminal "
                              "simulator elsewhere") from e
    except Exception as e:  # it raises plain Exception/RuntimeError when the board isn't a Jetson
        raise GpioUnavailable(f"Jetson.GPIO could not start: {e} (not a Jetson, or this user is "
                              "not in the 'gpio' group)") from e
    return GPIO


@dataclass
class _Switch:
    pin: int
    name: str            # button name, or the encoder's name for a push switch
    encoder: int | None  # the encoder index for a push switch, None for a button
    raw: int = 1         # latest level seen (callback or poll), not yet trusted
    raw_since: float = 0.0
    stable: int = 1      # debounced level; 0 = pressed
    down_since: float = 0.0
    long_fired: bool = False


@dataclass
class _Encoder:
    index: int
    pins: EncoderPins
    push: _Switch
    state: int = REST_STATE
    acc: int = 0                  # quarter steps since the last detent
    moved: bool = False           # any movement since the last detent (for the bounce stat)
    last_detent_t: float | None = None
    last_dir: int = 0
    turned_while_down: bool = False


class PanelInputs:
    """Encoders and buttons on Jetson.GPIO (or anything with its API) -> Turn / Click / Press.

    gpio: the Jetson.GPIO module (see open_jetson_gpio) or a fake with the same API.
    emit: receives each PanelEvent, called from poll() only (the caller's thread).
    clock: monotonic seconds; used by callbacks and poll alike.
    steps_per_detent: quarter steps per detent (4 for the usual full-cycle encoders, 2 or 1 for
        others); the detent positions are REST_STATE and every steps_per_detent quarter steps on.
    debounce_s: how long a switch level must be stable to count.
    accel: ((max interval s, multiplier), ...) checked in order; () turns acceleration off.
    resample: poll() re-reads every pin to catch edges whose callback never came.
    """

    def __init__(self, gpio, pin_map: PinMap, emit: Callable[[PanelEvent], None],
                 clock: Callable[[], float] = time.monotonic, *, steps_per_detent: int = 4,
                 debounce_s: float = 0.008, long_press_s: float = LONG_PRESS_S,
                 accel: Sequence[tuple[float, int]] = DEFAULT_ACCEL, resample: bool = True):
        if steps_per_detent not in (1, 2, 4):
            raise ValueError(f"steps_per_detent must be 1, 2 or 4, got {steps_per_detent}")
        self._gpio = gpio
        self._pin_map = pin_map
        self._emit = emit
        self._clock = clock
        self.steps_per_detent = steps_per_detent
        self.debounce_s = debounce_s
        self.long_press_s = long_press_s
        self.accel = tuple(sorted(accel))
        self.resample = resample

        self._detent_states = frozenset(s for s in range(4)
                                        if (_POS[s] - _POS[REST_STATE]) % steps_per_detent == 0)
        self._encoders = [_Encoder(i, pins, _Switch(pins.push, pins.name, i))
                          for i, pins in enumerate(pin_map.encoders)]
        self._buttons = [_Switch(pin_map.buttons[name], name, None) for name in BUTTONS]
        self._switches = [e.push for e in self._encoders] + self._buttons
        # pin -> what to do on its edge
        self._by_pin: dict[int, tuple[str, object]] = {}
        for enc in self._encoders:
            self._by_pin[enc.pins.a] = ("quad", enc)
            self._by_pin[enc.pins.b] = ("quad", enc)
        for sw in self._switches:
            self._by_pin[sw.pin] = ("switch", sw)

        self._lock = threading.Lock()
        self._pending: list[PanelEvent] = []
        self._stats = {"edges": 0, "missed_edges": 0, "bounces_ignored": 0, "stale_edges": 0,
                       "callback_errors": 0}
        self._started = False
        self._closed = False
        self._detecting: list[int] = []   # pins with event detection added by us

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def pins(self) -> tuple[int, ...]:
        return self._pin_map.input_pins()

    def start(self) -> None:
        """Set up every panel pin as an input and add BOTH-edge detection with our callback."""
        if self._started:
            raise RuntimeError("PanelInputs already started")
        g = self._gpio
        # Raises if another part of the process chose a different numbering; then nothing is ours.
        g.setmode(getattr(g, self._pin_map.numbering))
        self._started = True
        try:
            # No pull_up_down: Jetson.GPIO ignores it (and warns); the panel has external pull-ups.
            g.setup(list(self.pins), g.IN)
            with self._lock:
                now = self._clock()
                for enc in self._encoders:   # a knob may rest anywhere at boot: start from it
                    enc.state = self._read_quad(enc)
                for sw in self._switches:    # a switch held at boot is not a press
                    sw.raw = sw.stable = g.input(sw.pin)
                    sw.raw_since = sw.down_since = now
                    held = sw.stable == g.LOW
                    sw.long_fired = held              # ...nor a long press
                    if sw.encoder is not None:
                        self._encoders[sw.encoder].turned_while_down = held   # ...nor a Click
            for pin in self.pins:
                # No bouncetime (see the module docstring): we debounce, Jetson.GPIO would drop edges.
                try:
                    g.add_event_detect(pin, g.BOTH, callback=self._on_edge)
                except RuntimeError:
                    # "Conflicting edge already enabled": someone else in this process watches
                    # this pin; release ours but leave theirs set up.
                    self._close(keep=(pin,))
                    raise
                self._detecting.append(pin)
        except BaseException:
            self._close()
            raise

    def close(self) -> None:
        """Remove our event detection and release only our pins (other users of GPIO keep theirs).
        Idempotent. Callbacks still in flight on the GPIO thread are ignored from here on."""
        self._close()

    def _close(self, keep: Sequence[int] = ()) -> None:
        with self._lock:   # not held while calling into GPIO: its edge thread may be in _on_edge
            already, self._closed = self._closed, True
        if already or not self._started:
            return
        g = self._gpio
        for pin in self._detecting:
            try:
                g.remove_event_detect(pin)
            except Exception as e:  # keep going: the remaining pins still need releasing
                log.warning("remove_event_detect(%s) failed: %s", pin, e)
        self._detecting.clear()
        g.cleanup([pin for pin in self.pins if pin not in keep])

    def __enter__(self) -> PanelInputs:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, int]:
        """edges (callbacks), missed_edges (both quadrature bits changed between reads),
        bounces_ignored (switch blips shorter than debounce_s, encoder wiggles that came back to
        the detent), stale_edges (callbacks that found nothing new), callback_errors."""
        with self._lock:
            return dict(self._stats)

    # -- the panel loop's side -------------------------------------------------------------------

    def poll(self, now: float | None = None) -> list[PanelEvent]:
        """Confirm debounced switches, fire long presses, then emit (and return) queued events."""
        with self._lock:
            if self._closed:
                return []
            now = self._clock() if now is None else now
            if self.resample and self._started:
                for enc in self._encoders:
                    self._move(enc, now, from_edge=False)
                for sw in self._switches:
                    self._sample_switch(sw, now)
            for sw in self._switches:
                self._settle(sw, now)
            events, self._pending = self._pending, []
        for event in events:
            self._emit(event)
        return events

    # -- GPIO callback thread --------------------------------------------------------------------

    def _on_edge(self, channel: int) -> None:
        # An exception escaping here would kill Jetson.GPIO's edge thread, i.e. every knob.
        try:
            with self._lock:
                if self._closed:
                    return
                self._stats["edges"] += 1
                kind, obj = self._by_pin[channel]
                now = self._clock()
                if kind == "quad":
                    self._move(obj, now, from_edge=True)
                else:
                    self._sample_switch(obj, now)
        except Exception:
            with self._lock:
                self._stats["callback_errors"] += 1
            log.exception("panel GPIO callback failed for pin %s", channel)

    # -- encoders (called with the lock held) ----------------------------------------------------

    def _read_quad(self, enc: _Encoder) -> int:
        return (self._gpio.input(enc.pins.a) << 1) | self._gpio.input(enc.pins.b)

    def _move(self, enc: _Encoder, now: float, from_edge: bool) -> None:
        new = self._read_quad(enc)
        delta = _QUAD[enc.state][new]
        if new == enc.state:
            if from_edge:   # the level came back before we read it, or poll already saw it
                self._stats["stale_edges"] += 1
            return
        if delta is None:
            # Both contacts changed since the last read: an edge was missed. Two quarter steps
            # happened, direction unknown from the levels alone. Assume the way it has been going
            # since the last detent (sign of acc), else the last detent's direction; with no
            # history at all, ignore it (0). Detents are counted at the rest state with rounding,
            # so one missed edge per detent still gives the exact count.
            self._stats["missed_edges"] += 1
            direction = (enc.acc > 0) - (enc.acc < 0) or enc.last_dir
            delta = 2 * direction
        enc.state = new
        enc.acc += delta
        enc.moved = True
        if new in self._detent_states:
            self._detent(enc, now)

    def _detent(self, enc: _Encoder, now: float) -> None:
        """Back in a detent: turn the quarter steps since the last one into whole detents."""
        q, moved = enc.acc, enc.moved
        enc.acc, enc.moved = 0, False
        # Round half away from zero: +2 quarter steps (a missed edge guessed as 0) is still a detent.
        detents = int(math.copysign(math.floor(abs(q) / self.steps_per_detent + 0.5), q))
        if detents == 0:
            if moved:   # a wiggle or contact bounce that came back to where it was
                self._stats["bounces_ignored"] += 1
            return
        direction = 1 if detents > 0 else -1
        multiplier = 1
        if enc.last_detent_t is not None and direction == enc.last_dir:
            interval = (now - enc.last_detent_t) / abs(detents)
            for limit, mult in self.accel:
                if interval < limit:
                    multiplier = mult
                    break
        enc.last_detent_t, enc.last_dir = now, direction
        held = self._is_down(enc.push, now)
        if held:
            enc.turned_while_down = True   # no Click on this release
        self._queue_turn(Turn(enc.index, detents * multiplier, held))

    def _queue_turn(self, turn: Turn) -> None:
        # Coalesce with the previous event when it is the same knob, same way, same held, so a fast
        # spin between two polls is one Turn, not twenty.
        last = self._pending[-1] if self._pending else None
        if (isinstance(last, Turn) and last.encoder == turn.encoder and last.held == turn.held
                and (last.steps > 0) == (turn.steps > 0)):
            self._pending[-1] = Turn(turn.encoder, last.steps + turn.steps, turn.held)
        else:
            self._pending.append(turn)

    # -- switches (called with the lock held) ----------------------------------------------------

    def _sample_switch(self, sw: _Switch, now: float) -> None:
        # The previous level may have been stable long enough by now: confirm it before replacing it.
        self._settle(sw, now)
        level = self._gpio.input(sw.pin)
        if level == sw.raw:
            return
        if sw.raw != sw.stable and level == sw.stable:
            self._stats["bounces_ignored"] += 1   # went away and came back within debounce_s
        sw.raw, sw.raw_since = level, now

    def _is_down(self, sw: _Switch, now: float) -> bool:
        self._settle(sw, now)
        return sw.stable == self._gpio.LOW

    def _settle(self, sw: _Switch, now: float) -> None:
        if sw.raw != sw.stable and now - sw.raw_since >= self.debounce_s:
            sw.stable = sw.raw
            if sw.stable == self._gpio.LOW:
                self._went_down(sw)
            else:
                self._went_up(sw)
        if (sw.encoder is None and sw.stable == self._gpio.LOW and not sw.long_fired
                and now - sw.down_since >= self.long_press_s):
            # Long press fires while still held (mute must engage without waiting for release).
            sw.long_fired = True
            self._pending.append(Press(sw.name, long=True))

    def _went_down(self, sw: _Switch) -> None:
        sw.down_since = sw.raw_since   # when the level last changed, not when we confirmed it
        sw.long_fired = False
        if sw.encoder is not None:
            self._encoders[sw.encoder].turned_while_down = False

    def _went_up(self, sw: _Switch) -> None:
        if sw.encoder is not None:
            enc = self._encoders[sw.encoder]
            if not enc.turned_while_down:
                self._pending.append(Click(sw.encoder))
            enc.turned_while_down = False
        elif not sw.long_fired:
            # Normally a short press; long only if poll() was too late to fire it while held.
            held_for = sw.raw_since - sw.down_since
            self._pending.append(Press(sw.name, long=held_for >= self.long_press_s))
        sw.long_fired = False
