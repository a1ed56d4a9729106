"""What the JACK benchmarks share: a probe that plays into a box and hears what comes out."""

from __future__ import annotations

import subprocess
import threading
import time

import rtmidi

from sideman.clock import now_ns


class JackProbe:
    """`NAME-src:out` → the box's `sideman:in`, and the box's `sideman-out:out` → `NAME-sink:in`.
    The sink is polled, not called back: a Python callback on JACK's thread can deadlock or crash
    with the box (same process) closing its clients (see README, design notes). `arrivals` holds
    (receive time ns, message) in order."""

    def __init__(self, name: str, poll_s: float = 0.0002):
        self.arrivals: list[tuple[int, tuple]] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._poll_s = poll_s
        self._poller: threading.Thread | None = None
        self.source = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, f"{name}-src")
        self.sink = None
        try:
            self.source.open_virtual_port("out")
            self.sink = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, f"{name}-sink")
            self.sink.open_virtual_port("in")
            self._poller = threading.Thread(target=self._poll, daemon=True)
            self._poller.start()
            for a, b in ((f"{name}-src:out", "sideman:in"), ("sideman-out:out", f"{name}-sink:in")):
                subprocess.run(["jack_connect", a, b], check=True, stdout=subprocess.DEVNULL)
        except BaseException:
            self.close()
            raise

    def _poll(self) -> None:
        while not self._stop.is_set():
            event = self.sink.get_message()
            if event is None:
                time.sleep(self._poll_s)
                continue
            t = now_ns()
            with self.lock:
                self.arrivals.append((t, tuple(event[0])))

    def send(self, message) -> None:
        self.source.send_message(message)

    def messages(self) -> list[tuple]:
        with self.lock:
            return [m for _, m in self.arrivals]

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None
        if self.sink is not None:
            self.sink.delete()
            self.sink = None
        if self.source is not None:
            self.source.delete()
            self.source = None


class SinkPoller:
    """One thread taking the messages of several named JACK sinks (rtmidi inputs) as they come,
    polled, never called back (see JackProbe); each goes to take(path, message, receive time ns)."""

    def __init__(self, sinks: dict, poll_s: float = 0.0002):
        self.sinks = sinks
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sinks", daemon=True)

    def take(self, path: str, message: tuple, t_ns: int) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            for path, sink in self.sinks.items():
                event = sink.get_message()
                while event is not None:
                    busy = True
                    self.take(path, tuple(event[0]), now_ns())
                    event = sink.get_message()
            if not busy:
                time.sleep(self.poll_s)
