"""Hot-plug: keep the wanted ports connected as devices appear and disappear.

A `PortSet` knows which of the system's ports it wants (a name pattern, or "hardware") and how
to connect one; the watcher thread reconciles every set with the system at least once a second,
so an unplugged keyboard is reconnected as soon as it is back.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from sideman.ports.contract import PortError

log = logging.getLogger("sideman.hotplug")


class PortSet:
    def __init__(self, label: str, list_names: Callable[[], list[str]],
                 wanted: Callable[[list[str]], list[str]],
                 connect: Callable[[str], object], disconnect: Callable[[str, object], None],
                 announce: Callable[[str], None]):
        self.label = label
        self._list_names = list_names
        self.wanted = wanted  # replaceable: the panel/CLI can re-point a set at other ports
        self._connect = connect
        self._disconnect = disconnect
        self._announce = announce
        self.connected: dict[str, object] = {}
        self._failed: set[str] = set()  # say a failure once, not every second

    def reconcile(self) -> None:
        names = self._list_names()
        wanted = set(self.wanted(names))
        for name in [n for n in self.connected if n not in wanted]:
            self._disconnect(name, self.connected.pop(name))
            self._announce(f"{self.label} lost: {name} (will reconnect when it is back)")
        for name in sorted(wanted - set(self.connected)):
            try:
                self.connected[name] = self._connect(name)
            except PortError as exc:
                if name not in self._failed:
                    self._announce(f"{self.label} {name}: {exc}")
                    self._failed.add(name)
                continue
            self._failed.discard(name)
            self._announce(f"{self.label} connected: {name}")

    def close(self) -> None:
        for name in list(self.connected):
            self._disconnect(name, self.connected.pop(name))


class HotplugWatcher:
    def __init__(self, port_sets: list[PortSet], interval_s: float = 0.5):
        self.port_sets = port_sets
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the thread and an explicit reconcile_now() never overlap

    def reconcile_now(self) -> None:
        with self._lock:
            self._reconcile_all()

    def _reconcile_all(self) -> None:
        for port_set in self.port_sets:
            try:
                port_set.reconcile()
            except Exception:  # a flaky backend must not stop hot-plug for good
                log.exception("hot-plug check of %s failed", port_set.label)

    @property
    def died(self) -> bool:
        """Started, and its thread is no longer running (the service's health check)."""
        return self._thread is not None and not self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sideman-hotplug", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.reconcile_now()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
