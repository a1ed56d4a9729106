"""sd_notify: tell systemd we are ready, what we are doing, that we are stopping, and that we are
alive (the watchdog).

systemd-python's `systemd.daemon.notify` (libsystemd's sd_notify) is used when it imports; else a
few lines of socket code speak the same protocol: newline-separated VAR=value lines in one
datagram on the AF_UNIX SOCK_DGRAM socket named by $NOTIFY_SOCKET (a path, or an abstract-namespace
name when it starts with '@'). Without $NOTIFY_SOCKET (a laptop, a terminal, the tests) every call
is a no-op that returns False.

Nothing here raises: the watchdog is fed from the engine thread, and a notify socket that went away
must not take the music with it (a failure is logged once and the call returns False).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger("sideman.service")

AUTO, SYSTEMD_PYTHON, SOCKET = "auto", "systemd-python", "socket"


def _import_sd_notify():
    try:
        from systemd.daemon import notify  # systemd-python (libsystemd's sd_notify)
    except ImportError:
        return None
    return notify


def watchdog_interval_s(environ=None) -> float | None:
    """The watchdog timeout systemd expects us to beat, in seconds, or None when there is none.

    Same rules as sd_watchdog_enabled(3): $WATCHDOG_USEC must be a positive integer, and when
    $WATCHDOG_PID is set it must be our pid (else the watchdog is meant for another process)."""
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r (not a number)", usec_text)
        return None
    if usec <= 0:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000


class Notifier:
    """One per process. `backend`: "auto" (systemd-python if importable, else the socket),
    "systemd-python" (required: ImportError if missing) or "socket" (the pure-Python protocol)."""

    def __init__(self, backend: str = AUTO):
        self.address = os.environ.get("NOTIFY_SOCKET") or None
        sd_notify = None
        if backend in (AUTO, SYSTEMD_PYTHON):
            sd_notify = _import_sd_notify()
            if sd_notify is None and backend == SYSTEMD_PYTHON:
                raise ImportError("systemd-python is not installed (pip install systemd-python)")
        elif backend != SOCKET:
            raise ValueError(f"unknown notify backend {backend!r}")
        self._sd_notify = sd_notify
        self.backend = SYSTEMD_PYTHON if sd_notify is not None else SOCKET
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed_once = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        """True when started by systemd with a notify socket (Type=notify)."""
        return self.address is not None

    def watchdog_interval_s(self) -> float | None:
        return watchdog_interval_s()

    # --- the messages -------------------------------------------------------------------------
    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"]
        if status:
            lines.append(f"STATUS={_one_line(status)}")
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        lines = ["STOPPING=1"]
        if status:
            lines.append(f"STATUS={_one_line(status)}")
        return self.notify(*lines)

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def notify(self, *lines: str) -> bool:
        """Send VAR=value lines as one message. True when systemd was told."""
        if self.address is None:
            return False
        message = "\n".join(lines)
        try:
            if self._sd_notify is not None:
                ok = bool(self._sd_notify(message))
            else:
                ok = self._send(message.encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - never let a notification take the box down
            if not self._failed_once:
                self._failed_once = True
                log.warning("sd_notify to %s failed (%s); systemd may think we are hung", self.address, exc)
            return False
        if ok:
            self.sent += 1
        return ok

    def _send(self, data: bytes) -> bool:
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]  # Linux abstract namespace
        elif not address.startswith("/"):
            raise OSError(f"unsupported NOTIFY_SOCKET {self.address!r} (want a path or @name)")
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the caller (the engine thread) on a receiver that does not read.
            self._sock.sendto(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, address)
        return True

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    # Each line of a notification is a field: a newline in a status would start a bogus one.
    return " ".join(str(text).split("\n"))
