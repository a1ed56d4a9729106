"""Test helpers: a MIDI probe client on the JACK server, and a synth-like replay of messages."""

from __future__ import annotations

import threading
import time
import uuid


class MidiProbe:
    """A test client on the JACK server: plays into the box like a keyboard and listens like a synth."""

    def __init__(self, name: str = "probe"):
        import rtmidi

        self.name = f"{name}{uuid.uuid4().hex[:4]}"
        self.received: list[tuple[tuple, int]] = []
        self._lock = threading.Lock()
        self._out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, self.name)
        self._in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, self.name)
        self._in.ignore_types(sysex=False, timing=False, active_sense=False)
        # Polled from a thread, not a callback: a Python callback on JACK's process thread could
        # deadlock with the box (same process) closing a port while holding the GIL.
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self):
        from sideman.clock import now_ns

        while not self._stop.is_set():
            event = self._in.get_message()
            if event is None:
                time.sleep(0.0005)
                continue
            with self._lock:
                self.received.append((tuple(event[0]), now_ns()))

    def open_virtual(self, out_name="keys", in_name="synth"):
        """Ports that look like hardware for the box's auto-connect (client name = self.name)."""
        self._out.open_virtual_port(out_name)
        self._in.open_virtual_port(in_name)
        return self

    def connect(self, box_input="sideman:in", box_output="sideman-out:out", timeout_s=5.0):
        """Connect our output to the box's input port and the box's output port to our input."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            outs, ins = self._out.get_ports(), self._in.get_ports()
            if box_input in outs and box_output in ins:
                self._out.open_port(outs.index(box_input))
                self._in.open_port(ins.index(box_output))
                self.round_trip()
                return self
            time.sleep(0.05)
        raise AssertionError(f"box ports not found: {self._out.get_ports()} / {self._in.get_ports()}")

    def round_trip(self, listener: "MidiProbe | None" = None, timeout_s: float = 10.0):
        """Wait until a message sent from here reaches `listener` (default: us) through the box.
        JACK connections take effect at a later cycle; a note sent before that would be lost."""
        listener = listener or self
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.send((0xFE,))  # active sensing: passed through, ignored by voices and capture
            if listener.wait_for(lambda m: m == (0xFE,), timeout_s=0.1):
                time.sleep(0.1)  # let stragglers of the ping arrive before we forget them
                with listener._lock:
                    listener.received = [(m, t) for m, t in listener.received if m != (0xFE,)]
                return
        raise AssertionError("no round trip through the box")

    def send(self, message):
        self._out.send_message(list(message))

    def messages(self):
        with self._lock:
            return [m for m, _ in self.received]

    def received_with_times(self):
        """(message, arrival now_ns) pairs, in arrival order."""
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate, timeout_s=3.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                hits = [(m, t) for m, t in self.received if predicate(m)]
            if hits:
                return hits
            time.sleep(0.005)
        return []

    def close(self):
        self._stop.set()
        self._poller.join()
        self._in.delete()
        self._out.delete()


def sounding_after(messages, channel=None):
    """Replay a message list like a synth would and return the notes still sounding at the end."""
    sounding: dict[tuple[int, int], int] = {}
    for m in messages:
        if len(m) != 3 or m[0] >= 0xF0:
            continue
        status, ch = m[0] & 0xF0, m[0] & 0x0F
        if channel is not None and ch != channel:
            continue
        if status == 0x90 and m[2] > 0:
            sounding[(ch, m[1])] = sounding.get((ch, m[1]), 0) + 1
        elif status in (0x80, 0x90):
            if sounding.get((ch, m[1]), 0) > 0:
                sounding[(ch, m[1])] -= 1
        elif status == 0xB0 and m[1] == 123:
            for key in list(sounding):
                if key[0] == ch:
                    sounding[key] = 0
    return {k for k, v in sounding.items() if v > 0}


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    """Poll `predicate` every 2 ms until it holds or the time is up; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return bool(predicate())
