"""What `sideman run --service` adds to a Box: the watchdog fed from the engine loop, READY=1 with a
status line once the box is up, the status kept current (ports come and go), STOPPING=1 on the way
out. Off systemd (no $NOTIFY_SOCKET) every hook is a no-op and the engine loop is left untouched."""

from __future__ import annotations

import logging
from typing import Callable

from sideman.play.contracts import as_partner
from sideman.service.notify import Notifier
from sideman.service.watchdog import WatchdogFeeder

log = logging.getLogger("sideman.service")

STATUS_REFRESH_NS = 2_000_000_000  # how often the engine loop checks whether the status changed


def box_healthy(box) -> bool:
    """The threads the music needs are alive: the sender (AI notes, panic) and the hot-plug watcher.
    (The engine's own health is that it calls us at all.)"""
    return not box.scheduler.died and not (box.watcher is not None and box.watcher.died)


class ServiceHooks:
    def __init__(self, notifier: Notifier | None = None,
                 health: Callable[[object], bool] | None = box_healthy):
        self.notifier = notifier if notifier is not None else Notifier()
        self.health = health
        self.feeder: WatchdogFeeder | None = None
        self._box = None
        self._ready = False
        self._last_status: str | None = None
        self._next_status_ns = 0

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled

    def attach(self, box) -> None:
        """Set box.engine.on_loop (before or after box.start(): the engine reads it every pass)."""
        if not self.notifier.enabled:
            return
        self._box = box
        health = None if self.health is None else (lambda: self.health(box))
        self.feeder = WatchdogFeeder(self.notifier, self.notifier.watchdog_interval_s(), health)
        if self.feeder.enabled:
            log.info("feeding the systemd watchdog every %.2f s from the engine loop", self.feeder.interval_s / 2)
        box.engine.on_loop = self._on_loop

    def ready(self, box) -> None:
        """The box is started and listening: READY=1 with the status line."""
        line = self.status_line(box)
        self._last_status = line
        self._ready = True
        self.notifier.ready(line)

    def stopping(self) -> None:
        self._ready = False
        self.notifier.stopping("stopping: all notes off")

    @staticmethod
    def status_line(box) -> str:
        partner = as_partner(box.voice)
        mode = partner.mode if partner is not None else box.config.mode   # the panel may have changed it
        outputs = len(box.outputs.names())
        line = f"playing: voice {box.voice.name}, mode {mode}, {outputs} output{'s' if outputs != 1 else ''}"
        reason = partner.improviser_status.get("reason", "") if partner is not None else ""
        if reason:   # the transformer handed over to the Markov voice, and why
            line += f", {reason}"
        engine = box.engine
        if engine.voice_errors:
            line += f", {engine.voice_errors} voice errors"
        if engine.dropped:
            line += f", {engine.dropped} events dropped"
        if engine.shed:
            line += f", {engine.shed} late notes shed"
        return line

    def _on_loop(self, now_ns: int) -> None:
        # Engine thread, every pass: keep it to compares until something is due.
        if self.feeder is not None:
            self.feeder.engine_loop(now_ns)
        if self._ready and now_ns >= self._next_status_ns:
            self._next_status_ns = now_ns + STATUS_REFRESH_NS
            try:
                line = self.status_line(self._box)
                if line != self._last_status:
                    self._last_status = line
                    self.notifier.status(line)
            except Exception:  # noqa: BLE001 - a status line must never end the engine thread
                log.debug("status line failed", exc_info=True)
