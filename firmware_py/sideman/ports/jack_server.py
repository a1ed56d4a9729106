"""Start and stop a private JACK server on the dummy driver (no sound card needed).

Used by tests, benchmarks and by `sideman run` when neither ALSA sequencer nor a running JACK
server is available. The server name is unique per process so parallel sessions never meet.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time

from sideman.ports.contract import PortError

log = logging.getLogger("sideman.jack")

DEFAULT_RATE = 48000
DEFAULT_PERIOD = 64  # frames: 1.33 ms at 48 kHz, the period the thru benchmark reports against


class DummyJackServer:
    """A `jackd -d dummy` process. Use as a context manager; sets JACK_DEFAULT_SERVER for clients."""

    def __init__(self, name: str | None = None, rate: int = DEFAULT_RATE, period: int = DEFAULT_PERIOD,
                 synchronous: bool = False, client_timeout_ms: int | None = None):
        self.name = name or f"sideman-{os.getpid()}"
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

    @property
    def period_ms(self) -> float:
        return 1000.0 * self.period / self.rate

    def start(self, timeout_s: float = 10.0) -> "DummyJackServer":
        jackd = shutil.which("jackd")
        if jackd is None:
            raise PortError("no MIDI backend: jackd not found (install it: apt-get install jackd2)")
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        self.process = subprocess.Popen(
            [jackd, "--no-realtime", *(["--sync"] if self.synchronous else []),
             *(["--timeout", str(self.client_timeout_ms)] if self.client_timeout_ms else []),
             "--name", self.name, "-d", "dummy",
             "-r", str(self.rate), "-p", str(self.period)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, start_new_session=True,
        )
        self._previous_env = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace").strip().splitlines()
                raise PortError(f"private JACK server failed to start: {err[-1] if err else 'no output'}")
            if jack_server_running():
                log.info("started private JACK server %r (dummy driver, %d frames @ %d Hz)",
                         self.name, self.period, self.rate)
                return self
            time.sleep(0.05)
        self.stop()
        raise PortError("private JACK server did not come up within %.0f s" % timeout_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
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
