"""MIDI ports through python-rtmidi: ALSA sequencer (the box, Linux laptops) and JACK (dev, tests).

One `RtMidiBackend` per process: it lists the system's ports, opens virtual ports, and connects to
existing ports by name. Port names compared here are rtmidi's: "client:port" on JACK,
"Client:Port 20:0" on ALSA.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import rtmidi

from sideman.clock import now_ns
from sideman.ports.contract import PortError, Receiver
from sideman.ports.jack_server import DummyJackServer, jack_server_running

log = logging.getLogger("sideman.ports")

API_BY_NAME = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}
# Names of our own clients start with this, so the hot-plug watcher never connects us to ourselves.
OWN_PREFIX = "sideman"
# Which ports count as "hardware" for auto-connect when the musician names no port.
DEFAULT_HARDWARE_PATTERN = {
    # ALSA: everything but the kernel's loopback, rtmidi's default clients and our own.
    "alsa": r"^(?!(Midi Through|RtMidi|sideman|Timer|Announce))",
    # JACK: physical ports (system:) and the ALSA bridge (a2j:).
    "jack": r"^(system|a2j):",
}
JACK_DRAIN_S = 0.05
INSTALL_HINT = ("install ALSA sequencer support (modprobe snd-seq) or JACK "
                "(apt-get install jackd2), and python-rtmidi built with them")


@dataclass
class Backend:
    name: str  # "alsa" or "jack"
    api: int
    private_server: DummyJackServer | None = None  # set when we started jackd ourselves

    def describe(self) -> str:
        if self.private_server is not None:
            return (f"{self.name} (private dummy server '{self.private_server.name}', "
                    f"{self.private_server.period} frames @ {self.private_server.rate} Hz)")
        return self.name

    def close(self) -> None:
        if self.private_server is not None:
            self.private_server.stop()
            self.private_server = None


def choose_backend(requested: str = "auto", start_private_jack: bool = True) -> Backend:
    """auto: ALSA if /dev/snd/seq exists, else a running JACK server, else a private dummy JACK."""
    compiled = rtmidi.get_compiled_api()
    if requested not in ("auto", "alsa", "jack"):
        raise PortError(f"unknown MIDI backend {requested!r} (use auto, alsa or jack)")
    if requested in ("alsa", "auto") and rtmidi.API_LINUX_ALSA in compiled and os.path.exists("/dev/snd/seq"):
        return Backend("alsa", rtmidi.API_LINUX_ALSA)
    if requested == "alsa":
        raise PortError("ALSA sequencer not available (/dev/snd/seq missing: modprobe snd-seq)")
    if rtmidi.API_UNIX_JACK not in compiled:
        raise PortError(f"no MIDI backend: python-rtmidi has neither ALSA nor JACK; {INSTALL_HINT}")
    if jack_server_running():
        return Backend("jack", rtmidi.API_UNIX_JACK)
    if not start_private_jack:
        raise PortError(f"no MIDI backend running (no ALSA sequencer, no JACK server); {INSTALL_HINT}")
    server = DummyJackServer().start()
    log.warning("no ALSA sequencer and no JACK server: started a private JACK server %r", server.name)
    return Backend("jack", rtmidi.API_UNIX_JACK, private_server=server)


class InputPoller:
    """One thread that takes incoming messages out of every rtmidi input's queue.

    Why not rtmidi's callbacks: python-rtmidi would call Python from JACK's process thread (ALSA:
    its input thread), and it holds the GIL through blocking calls such as opening or closing a
    client. JACK's server waits for every client's process cycle before it completes such a call,
    and a process thread waiting for the GIL never finishes its cycle: a deadlock, seen in testing
    when a note arrived while an unplugged synth's port was being closed. With polling, no Python
    ever runs on those threads. The poll interval (0.25 ms) is well under one JACK period.
    """

    POLL_S = 0.00025

    def __init__(self):
        self._inputs: tuple[RtMidiInput, ...] = ()
        self._lock = threading.Lock()  # held for a sweep; removal waits for it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, port: "RtMidiInput") -> None:
        with self._lock:
            self._inputs = self._inputs + (port,)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sideman-midi-in", daemon=True)
                self._thread.start()

    def remove(self, port: "RtMidiInput") -> None:
        with self._lock:
            self._inputs = tuple(p for p in self._inputs if p is not port)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            with self._lock:
                for port in self._inputs:
                    busy |= port.take_messages()
            if not busy:
                time.sleep(self.POLL_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


_POLLER = InputPoller()


class RtMidiInput:
    """One rtmidi input: a virtual port others connect to, or a connection to an existing port."""

    def __init__(self, backend: Backend, client_name: str, *, virtual_name: str | None = None,
                 connect_to: str | None = None, poller: InputPoller = _POLLER):
        try:
            self._midi_in = rtmidi.MidiIn(backend.api, client_name, queue_size_limit=4096)
            # Pass everything through: SysEx, clock, active sensing are the synth's business too.
            self._midi_in.ignore_types(sysex=False, timing=False, active_sense=False)
            if virtual_name is not None:
                self._midi_in.open_virtual_port(virtual_name)
                self.name = f"{client_name}:{virtual_name}"
            else:
                index = _index_of(self._midi_in.get_ports(), connect_to)
                self._midi_in.open_port(index, "in")
                self.name = connect_to
        except (rtmidi.SystemError, rtmidi.InvalidPortError, rtmidi.NoDevicesError) as exc:
            raise PortError(f"cannot open MIDI input {connect_to or virtual_name!r}: {exc}") from exc
        self._receiver: Receiver | None = None
        self._poller = poller
        poller.add(self)

    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver

    def take_messages(self) -> bool:
        """Called by the poller: hand every queued message to the receiver. True if any."""
        event = self._midi_in.get_message()
        if event is None:
            return False
        while event is not None:
            receiver = self._receiver
            if receiver is not None:
                receiver(tuple(event[0]), now_ns())
            event = self._midi_in.get_message()
        return True

    def close(self) -> None:
        self._receiver = None
        self._poller.remove(self)
        self._midi_in.close_port()
        self._midi_in.delete()


class RtMidiOutput:
    """One rtmidi output: a virtual port, or a connection to an existing destination."""

    def __init__(self, backend: Backend, client_name: str, *, virtual_name: str | None = None,
                 connect_to: str | None = None):
        try:
            self._midi_out = rtmidi.MidiOut(backend.api, client_name)
            self._drain_s = JACK_DRAIN_S if backend.name == "jack" else 0.0
            if virtual_name is not None:
                self._midi_out.open_virtual_port(virtual_name)
                self.name = f"{client_name}:{virtual_name}"
            else:
                self._midi_out.open_port(_index_of(self._midi_out.get_ports(), connect_to), "out")
                self.name = connect_to
        except (rtmidi.SystemError, rtmidi.InvalidPortError, rtmidi.NoDevicesError) as exc:
            raise PortError(f"cannot open MIDI output {connect_to or virtual_name!r}: {exc}") from exc

    def send(self, message: Sequence[int]) -> None:
        # Callers serialise sends per output (see schedule.outputs.OutputSlot).
        self._midi_out.send_message(message)

    def close(self) -> None:
        if self._drain_s:
            # JACK takes queued messages out at the next process cycle; closing first would lose
            # the last note-offs of a panic. A few periods (64-1024 frames) is plenty.
            time.sleep(self._drain_s)
        self._midi_out.close_port()
        self._midi_out.delete()


class PortLister:
    """Lists the system's MIDI sources and destinations (one persistent client, not one per look)."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._lock = threading.Lock()
        self._in = rtmidi.MidiIn(backend.api, f"{OWN_PREFIX}-lister")
        self._out = rtmidi.MidiOut(backend.api, f"{OWN_PREFIX}-lister")

    def sources(self) -> list[str]:
        """Ports that send MIDI (keyboards): what an input connects to."""
        with self._lock:
            return list(self._in.get_ports())

    def destinations(self) -> list[str]:
        """Ports that take MIDI (synths): what an output connects to."""
        with self._lock:
            return list(self._out.get_ports())

    def close(self) -> None:
        self._in.delete()
        self._out.delete()


def is_own_port(name: str) -> bool:
    return name.startswith(OWN_PREFIX)


def matching_ports(names: Sequence[str], pattern: str) -> list[str]:
    """Ports whose name contains `pattern` (case-insensitive), never our own."""
    needle = pattern.lower()
    return [n for n in names if needle in n.lower() and not is_own_port(n)]


def hardware_ports(names: Sequence[str], regex: str) -> list[str]:
    rx = re.compile(regex)
    return [n for n in names if rx.search(n) and not is_own_port(n)]


def _index_of(names: Sequence[str], wanted: str | None) -> int:
    try:
        return list(names).index(wanted)
    except ValueError:
        raise PortError(f"MIDI port {wanted!r} has gone (available: {', '.join(names) or 'none'})") from None
