"""The systemd watchdog, fed from the engine loop.

`WatchdogFeeder.engine_loop` is set as `Engine.on_loop`: the engine calls it with now_ns() on every
pass (every ~5 ms when idle), and it sends WATCHDOG=1 at most once per half watchdog interval. A
voice stuck in a loop, a deadlock, anything that stops the engine passing through its loop stops
the pings, and systemd kills and restarts the service after WatchdogSec (ExecStopPost then sends a
MIDI panic). An optional health check (e.g. "the sender thread is alive") must also pass to ping.

Cheap on purpose: an integer compare per call when it is not time to ping, and it never raises
(an exception here would end the engine thread)."""

from __future__ import annotations

import logging
from typing import Callable

from sideman.service.notify import Notifier

log = logging.getLogger("sideman.service")


class WatchdogFeeder:
    def __init__(self, notifier: Notifier, interval_s: float | None,
                 health: Callable[[], bool] | None = None):
        """`interval_s`: systemd's watchdog timeout (Notifier.watchdog_interval_s()); None or 0
        disables the feeder. `health`: called when a ping is due; a false answer withholds it."""
        self.notifier = notifier
        self.interval_s = interval_s or 0.0
        self.period_ns = int(self.interval_s * 1e9 / 2)
        self.health = health
        self._last_ping_ns: int | None = None
        self.pings = 0
        self.withheld = 0      # pings not sent because the health check failed
        self._unhealthy = False
        self._error_logged = False

    @property
    def enabled(self) -> bool:
        return self.period_ns > 0 and self.notifier.enabled

    def engine_loop(self, now_ns: int) -> None:
        """Engine.on_loop: ping if half the interval has passed since the last ping."""
        if self.period_ns <= 0:
            return
        last = self._last_ping_ns
        if last is not None and now_ns - last < self.period_ns:
            return
        try:
            if self.health is not None and not self.health():
                self.withheld += 1
                if not self._unhealthy:
                    self._unhealthy = True
                    log.error("health check failed: not feeding the systemd watchdog (a restart follows)")
                return
            if self._unhealthy:
                self._unhealthy = False
                log.warning("health check passes again: feeding the systemd watchdog")
            self._last_ping_ns = now_ns
            if self.notifier.watchdog():
                self.pings += 1
        except Exception:  # noqa: BLE001 - must not end the engine thread
            if not self._error_logged:
                self._error_logged = True
                log.exception("watchdog feeder failed")
