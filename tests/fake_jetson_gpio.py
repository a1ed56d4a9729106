"""A stand-in for the Jetson.GPIO module, for driving the panel's GPIO driver in tests.

Same names, constants and signatures as Jetson.GPIO 2.x (lib/python/Jetson/GPIO/gpio.py in
NVIDIA/jetson-gpio), the same exceptions and messages on misuse, plus a clock and test hooks to move
pins: set_level() fires the registered callbacks (callback(channel), synchronously, honouring the edge
kind and bouncetime like the real edge thread), turn() plays quadrature edges, press()/release() a
switch, each optionally with contact bounce and edges whose callback is lost.

Levels start HIGH (the panel's external pull-ups). Time only moves when a test (or a helper) advances
it; pass `fake.clock` to the driver.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

# The Orin/Xavier/Nano developer kits' 40-pin header: the GPIO-capable pins, BOARD -> BCM number.
# (3, 5, 8, 10, 27, 28 are I2C/UART and not in Jetson.GPIO's tables; the rest are power/ground.)
BOARD_TO_BCM = {7: 4, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10, 21: 9, 22: 25, 23: 11,
                24: 8, 26: 7, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21}

# Clockwise quadrature, (A, B) as read, A leading: 11 -> 01 -> 00 -> 10 -> 11.
_CW = ((1, 1), (0, 1), (0, 0), (1, 0))

BOUNCE_GAP_S = 0.0003   # between contact-bounce toggles


class _Event:
    def __init__(self, edge: int, bouncetime: int | None):
        self.edge = edge
        self.bouncetime = bouncetime
        self.callbacks: list[Callable[[], None]] = []
        self.lastcall: float | None = None
        self.event_occurred = False


class FakeJetsonGPIO:
    """One instance = one process's Jetson.GPIO module state."""

    # Constants, as in Jetson.GPIO 2.x
    BOARD = 10
    BCM = 11
    TEGRA_SOC = 1000
    CVM = 1001
    PUD_OFF = 20
    PUD_DOWN = 21
    PUD_UP = 22
    HIGH = 1
    LOW = 0
    RISING = 31
    FALLING = 32
    BOTH = 33
    UNKNOWN = -1
    OUT = 0
    IN = 1
    HARD_PWM = 43
    VERSION = "2.1.7-fake"
    JETSON_INFO = {"TYPE": "Fake Jetson", "MANUFACTURER": "tests"}
    model = "JETSON_ORIN_NANO"

    def __init__(self, start_time: float = 1000.0):
        self.now = start_time
        self._mode: int | None = None
        self._warnings = True
        self._config: dict[int, int] = {}            # BOARD pin -> IN/OUT, for set-up pins
        self._levels: dict[int, int] = {pin: self.HIGH for pin in BOARD_TO_BCM}
        self._events: dict[int, _Event] = {}          # BOARD pin -> event detection
        self.calls: list[tuple] = []                  # (function name, args...) for assertions
        self.callbacks_fired = 0
        self.callbacks_dropped = 0                    # lost on purpose (drop_edges)
        self.callbacks_debounced = 0                  # suppressed by bouncetime

    # -- time ------------------------------------------------------------------------------------

    def clock(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        assert dt >= 0
        self.now += dt

    # -- Jetson.GPIO's API -----------------------------------------------------------------------

    def setwarnings(self, state) -> None:
        self._warnings = bool(state)

    def setmode(self, mode) -> None:
        self.calls.append(("setmode", mode))
        if self._mode and mode != self._mode:
            raise ValueError("A different mode has already been set!")
        if mode not in (self.BOARD, self.BCM, self.TEGRA_SOC, self.CVM):
            raise ValueError("An invalid mode was passed to setmode()!")
        if mode not in (self.BOARD, self.BCM):
            raise NotImplementedError("the fake knows BOARD and BCM numbering only")
        self._mode = mode

    def getmode(self):
        return self._mode

    def setup(self, channels, direction, pull_up_down=None, initial=None) -> None:
        self.calls.append(("setup", channels, direction))
        pins = [self._board_pin(c) for c in _iterable(channels)]
        if direction not in (self.OUT, self.IN):
            raise ValueError("An invalid direction was passed to setup()")
        if direction == self.OUT and pull_up_down not in (None, self.PUD_OFF):
            raise ValueError("pull_up_down parameter is not valid for outputs")
        if pull_up_down is not None:
            warnings.warn("Jetson.GPIO ignores setup()'s pull_up_down parameter")
            if pull_up_down not in (self.PUD_OFF, self.PUD_UP, self.PUD_DOWN):
                raise ValueError("Invalid value for pull_up_down; should be one ofPUD_OFF, PUD_UP "
                                 "or PUD_DOWN")
        if direction == self.IN and initial is not None:
            raise ValueError("initial parameter is not valid for inputs")
        for pin in pins:
            self._config[pin] = direction
            if direction == self.OUT and initial is not None:
                self._levels[pin] = int(bool(initial))

    def input(self, channel) -> int:
        pin = self._board_pin(channel)
        if self._config.get(pin) not in (self.IN, self.OUT):
            raise RuntimeError("You must setup() the GPIO channel first")
        return self._levels[pin]

    def output(self, channels, values) -> None:
        pins = [self._board_pin(c) for c in _iterable(channels)]
        values = list(_iterable(values))
        if len(values) == 1:
            values = values * len(pins)
        if len(values) != len(pins):
            raise RuntimeError("Number of values != number of channels")
        if any(self._config.get(p) != self.OUT for p in pins):
            raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
        for pin, value in zip(pins, values):
            self._levels[pin] = int(bool(value))

    def add_event_detect(self, channel, edge, callback=None, bouncetime=None, polltime=0.2) -> None:
        self.calls.append(("add_event_detect", channel, edge, bouncetime))
        pin = self._board_pin(channel)
        if callback is not None and not callable(callback):
            raise TypeError("Callback Parameter must be callable")
        if self._config.get(pin) != self.IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if edge not in (self.RISING, self.FALLING, self.BOTH):
            raise ValueError("The edge must be set to RISING, FALLING, or BOTH")
        if bouncetime is not None:
            if type(bouncetime) is not int:
                raise TypeError("bouncetime must be an integer")
            if bouncetime < 0:
                raise ValueError("bouncetime must be an integer greater than 0")
        if pin in self._events:
            # Jetson.GPIO's gpio_event.add_edge_detect returns 1 -> this message in gpio.py
            raise RuntimeError("Conflicting edge already enabled for this GPIO channel")
        self._events[pin] = _Event(edge, bouncetime)
        if callback is not None:
            self._events[pin].callbacks.append(lambda: callback(channel))

    def add_event_callback(self, channel, callback) -> None:
        pin = self._board_pin(channel)
        if not callable(callback):
            raise TypeError("Parameter must be callable")
        if self._config.get(pin) != self.IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if pin not in self._events:
            raise RuntimeError("Add event detection using add_event_detect first before adding a "
                               "callback")
        self._events[pin].callbacks.append(lambda: callback(channel))

    def remove_event_detect(self, channel) -> None:
        self.calls.append(("remove_event_detect", channel))
        self._events.pop(self._board_pin(channel), None)   # the real one is silent when none

    def event_detected(self, channel) -> bool:
        pin = self._board_pin(channel)
        if self._config.get(pin) != self.IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        event = self._events.get(pin)
        if event is None or not event.event_occurred:
            return False
        event.event_occurred = False
        return True

    def cleanup(self, channel=None) -> None:
        self.calls.append(("cleanup", channel))
        if self._mode is None:
            if self._warnings:
                warnings.warn("No channels have been set up yet - nothing to clean up! Try "
                              "cleaning up at the end of your program instead!", RuntimeWarning)
            return
        if channel is None:
            pins = list(self._config)
        else:
            pins = [p for p in (self._board_pin(c) for c in _iterable(channel)) if p in self._config]
        for pin in pins:
            self._events.pop(pin, None)
            del self._config[pin]
        if channel is None:
            self._mode = None

    def gpio_function(self, channel) -> int:
        return self._config.get(self._board_pin(channel), self.UNKNOWN)

    # -- test hooks: what the test can see -------------------------------------------------------

    def is_setup(self, pin: int) -> bool:
        return pin in self._config

    def has_event_detect(self, pin: int) -> bool:
        return pin in self._events

    def level(self, pin: int) -> int:
        return self._levels[pin]

    # -- test hooks: moving pins -----------------------------------------------------------------

    def set_level(self, pin: int, level: int, fire: bool = True) -> None:
        """Set a BOARD pin's level. On a change, fire its callbacks like the real edge thread would,
        unless `fire` is False (the callback thread missed this edge)."""
        level = int(bool(level))
        old = self._levels[pin]
        self._levels[pin] = level
        event = self._events.get(pin)
        if old == level or event is None:
            return
        wanted = self.RISING if level else self.FALLING
        if event.edge not in (wanted, self.BOTH):
            return
        if not fire:
            self.callbacks_dropped += 1
            return
        # gpio_event's debounce: drop edges within bouncetime ms of the last accepted one
        if (event.bouncetime is not None and event.lastcall is not None
                and (self.now - event.lastcall) * 1000 <= event.bouncetime):
            self.callbacks_debounced += 1
            return
        event.lastcall = self.now
        event.event_occurred = True
        for cb in list(event.callbacks):
            self.callbacks_fired += 1
            cb()

    def _change(self, pin: int, level: int, bounce: int, fire: bool = True) -> None:
        """Move a contact to `level`, first chattering `bounce` times (level, back, ...)."""
        for _ in range(bounce):
            self.set_level(pin, level)
            self.advance(BOUNCE_GAP_S)
            self.set_level(pin, 1 - level)
            self.advance(BOUNCE_GAP_S)
        self.set_level(pin, level, fire=fire)

    def turn(self, a_pin: int, b_pin: int, detents: int, direction: int = 1, *,
             interval: float = 0.15, bounce: bool | int = False,
             drop_edges: Iterable[int] = ()) -> None:
        """Turn an encoder `detents` detents (4 quadrature edges each) clockwise (direction=+1) or
        counter-clockwise (-1), one detent per `interval` seconds (edges evenly spaced, the clock
        advancing before each). bounce: chatter each contact that many times (True = 2) before it
        settles. drop_edges: indices of the quadrature edges (0 .. 4*detents-1) whose level change
        happens without a callback."""
        assert direction in (1, -1)
        bounce = 2 if bounce is True else int(bounce)
        dropped = set(drop_edges)
        state = (self._levels[a_pin], self._levels[b_pin])
        pos = _CW.index(state)
        for edge in range(4 * detents):
            self.advance(interval / 4)
            pos = (pos + direction) % 4
            a, b = _CW[pos]
            pin, level = (a_pin, a) if a != self._levels[a_pin] else (b_pin, b)
            self._change(pin, level, bounce if edge not in dropped else 0, fire=edge not in dropped)

    def press(self, pin: int, bounce: bool | int = False) -> None:
        """Close a switch (active low), chattering first when asked."""
        self._change(pin, self.LOW, 2 if bounce is True else int(bounce))

    def release(self, pin: int, bounce: bool | int = False) -> None:
        self._change(pin, self.HIGH, 2 if bounce is True else int(bounce))

    # -- internals -------------------------------------------------------------------------------

    def _board_pin(self, channel) -> int:
        if self._mode is None:
            raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD), "
                               "GPIO.setmode(GPIO.BCM), GPIO.setmode(GPIO.TEGRA_SOC) or "
                               "GPIO.setmode(GPIO.CVM)")
        if self._mode == self.BOARD:
            if channel not in BOARD_TO_BCM:
                raise ValueError("Channel %s is invalid" % str(channel))
            return channel
        for board, bcm in BOARD_TO_BCM.items():
            if bcm == channel:
                return board
        raise ValueError("Channel %s is invalid" % str(channel))


def _iterable(x) -> list:
    if isinstance(x, str):
        return [x]
    try:
        return list(x)
    except TypeError:
        return [x]
