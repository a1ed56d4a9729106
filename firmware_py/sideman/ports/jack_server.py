"""Start and stop a private JACK server on the dummy driver (no sound card needed).

Used by tests, benchmarks and by `sideman run` when neither ALSA sequencer nor a running JACK
server is available. The server name is unique per process so parallel sessions never meet.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import subprocess
import threading
import time

from sideman.ports.contract import PortError
from sideman.processes import dies_with_parent

log = logging.getLogger("sideman.jack")

DEFAULT_RATE = 48000
DEFAULT_PERIOD = 64  # frames: 1.33 ms at 48 kHz, the period the thru benchmark reports against
# Ports the server can hold. jackd's default (2048) makes a ~107 MB shared segment, and a box maps
# it twice (python-rtmidi's libjack and JACK-Client's, for the patched thru): ~210 MB of its RSS,
# all of it shared. 256 ports make it ~47 MB; a box, its probes and a built-in piano need a few dozen.
PORT_MAX = 256


class DummyJackServer:
    """A `jackd -d dummy` process. Use as a context manager; sets JACK_DEFAULT_SERVER for clients."""

    def __init__(self, name: str | None = None, rate: int = DEFAULT_RATE, period: int = DEFAULT_PERIOD,
                 synchronous: bool = False, client_timeout_ms: int | None = None,
                 realtime: bool | None = None):
        self.name = name or f"sideman-{os.getpid()}"
        # Real-time scheduling for the server's and its clients' process threads, as every real
        # JACK setup runs: without it, on a loaded 2-core machine a client that the kernel
        # schedules late misses a 1.3 ms cycle and its MIDI for that cycle is lost (seen: 5-16 of
        # 320 notes, on a direct connection too, while the transformer answered; 0 with it).
        # None: when this process may have it (root, or an rtprio limit such as the audio group's).
        self.realtime = may_use_realtime() if realtime is None else realtime
        # jackd's client timeout (-t, 500 ms by default in sync mode): a client that does not
        # answer a cycle for this long is thrown out ("zombified"), which can take down the
        # process that holds it. None keeps jackd's default.
        self.client_timeout_ms = client_timeout_ms
        # Synchronous mode: the server waits for late clients instead of dropping their cycle
        # (and its MIDI). Right for tests on a loaded machine; the benchmark keeps the default.
        self.synchronous = synchronous
        self.rate = rate
        self.period = period
        self.process: subprocess.Popen | None = None
        self._previous_env: str | None = None
        # What jackd says on stderr, drained as it comes (see _drain_stderr): the last lines, and
        # how many xruns (a client that missed its cycle) it reported.
        self.last_messages: collections.deque[str] = collections.deque(maxlen=20)
        self.xruns = 0
        self._drainer: threading.Thread | None = None

    @property
    def period_ms(self) -> float:
        return 1000.0 * self.period / self.rate

    def start(self, timeout_s: float = 10.0) -> "DummyJackServer":
        jackd = shutil.which("jackd")
        if jackd is None:
            raise PortError("no MIDI backend: jackd not found (install it: apt-get install jackd2)")
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        self.process = subprocess.Popen(dies_with_parent(
            [jackd, *([] if self.realtime else ["--no-realtime"]), *(["--sync"] if self.synchronous else []),
             *(["--timeout", str(self.client_timeout_ms)] if self.client_timeout_ms else []),
             "--port-max", str(PORT_MAX), "--name", self.name, "-d", "dummy",
             "-r", str(self.rate), "-p", str(self.period)]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, start_new_session=True,
        )
        self._drainer = threading.Thread(target=self._drain_stderr, args=(self.process.stderr,),
                                         name="jackd-stderr", daemon=True)
        self._drainer.start()
        self._previous_env = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._drainer.join(timeout=2)
                said = self.last_messages[-1] if self.last_messages else "no output"
                self.stop()
                raise PortError(f"private JACK server failed to start: {said}")
            if jack_server_running():
                log.info("started private JACK server %r (dummy driver, %d frames @ %d Hz%s)",
                         self.name, self.period, self.rate, ", real-time" if self.realtime else "")
                return self
            time.sleep(0.05)
        self.stop()
        raise PortError("private JACK server did not come up within %.0f s" % timeout_s)

    def _drain_stderr(self, stream) -> None:
        """Read jackd's stderr to the end. Nobody reading it was why JACK clients hung on close:
        on a loaded machine the dummy driver reports an xrun line at a time, the 64 KB pipe
        filled, jackd's engine blocked in write() (holding stdio's lock), and every
        jack_client_close() waited for it forever."""
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if "XRun" in line:
                self.xruns += 1
            self.last_messages.append(line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._drainer is not None:
            self._drainer.join(timeout=2)  # jackd has exited: its stderr ends
            self._drainer = None
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self._previous_env is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = self._previous_env

    def __enter__(self) -> "DummyJackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def may_use_realtime() -> bool:
    """Whether this process may ask for real-time scheduling (SCHED_FIFO)."""
    import resource

    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] > 0


def jack_server_running() -> bool:
    """True when a JACK server named by JACK_DEFAULT_SERVER (or 'default') accepts clients."""
    # Ask jack_lsp (jackd2's own tool) in a child process: a failed connection from inside this
    # process would make libjack print several lines of noise to our stderr.
    jack_lsp = shutil.which("jack_lsp")
    if jack_lsp is not None:
        probe = subprocess.run([jack_lsp], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)
        return probe.returncode == 0
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return False
    try:
        probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "sideman-probe")
    except rtmidi.SystemError:
        return False
    probe.delete()
    return True
