"""`sideman run --service` as systemd runs it (a real NOTIFY_SOCKET this test opens, a real JACK
server), and `sideman panic`, the unit's ExecStopPost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from midi_probe import MidiProbe, sounding_after

pytestmark = pytest.mark.jack


def _env(data_dir, **extra):
    env = dict(os.environ, SIDEMAN_DATA_DIR=str(data_dir), PYTHONPATH=os.pathsep.join(sys.path), **extra)
    env.pop("WATCHDOG_PID", None)
    return env


def _datagrams(sock: socket.socket, until, timeout_s: float) -> list[str]:
    got, deadline = [], time.monotonic() + timeout_s
    while not until(got) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return got


def test_run_as_a_service_reports_ready_feeds_the_watchdog_and_stops_in_silence(jack_server, data_dir):
    folder = tempfile.mkdtemp(prefix="sm-")  # sun_path is short: not under pytest's long tmp path
    address = str(Path(folder) / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    box = subprocess.Popen([sys.executable, "-m", "sideman", "run", "--service", "--backend", "jack",
                            "--no-autoconnect"], env=_env(data_dir, NOTIFY_SOCKET=address, WATCHDOG_USEC="400000"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    probe = MidiProbe()
    try:
        got = _datagrams(sock, lambda g: any("READY=1" in d.split("\n") for d in g), 30)
        ready = [d for d in got if "READY=1" in d.split("\n")]
        assert ready, f"no READY=1; got {got}"
        assert "STATUS=playing: voice transformer[" in ready[0]
        pings = _datagrams(sock, lambda g: g.count("WATCHDOG=1") >= 3, 10)
        assert pings.count("WATCHDOG=1") >= 3
        probe.connect()
        for pitch in (62, 65, 69):
            probe.send((0x90, pitch, 80))
            time.sleep(0.12)
            probe.send((0x80, pitch, 0))
        assert probe.wait_for(lambda m: m[0] == 0x91 and m[2] > 0, timeout_s=5), "no answer"
        os.killpg(box.pid, signal.SIGTERM)
        stopping = _datagrams(sock, lambda g: any("STOPPING=1" in d.split("\n") for d in g), 15)
        assert any("STOPPING=1" in d.split("\n") for d in stopping)
        assert box.wait(timeout=15) == 0
        assert sounding_after(probe.messages()) == set()
    finally:
        probe.close()
        sock.close()
        if box.poll() is None:
            os.killpg(box.pid, signal.SIGKILL)


def test_panic_command_silences_every_channel_of_the_chosen_output(jack_server, data_dir):
    synth = MidiProbe("deadsynth").open_virtual()
    try:
        result = subprocess.run([sys.executable, "-m", "sideman", "panic", "--backend", "jack",
                                 "--output", synth.name], env=_env(data_dir),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert synth.name in result.stdout
        assert synth.wait_for(lambda m: m == (0xBF, 123, 0), timeout_s=5)
        received = set(synth.messages())
        for channel in range(16):
            assert {(0xB0 | channel, 64, 0), (0xB0 | channel, 123, 0), (0xB0 | channel, 120, 0)} <= received
    finally:
        synth.close()


def test_din_auto_uses_the_pin_maps_uart_and_a_uart_that_will_not_open_does_not_stop_the_box(
        jack_server, tmp_path, monkeypatch):
    import pty

    from sideman.box import Box, BoxConfig, resolve_din
    from sideman.model.echo import SilentVoice

    pin_map = (Path(__file__).resolve().parents[1] / "hardware" / "pinmap.toml").read_text()
    master, slave = pty.openpty()
    try:
        uart = os.ttyname(slave)
        (tmp_path / "pty.toml").write_text(pin_map.replace('uart = "/dev/ttyTHS0"', f'uart = "{uart}"'))
        monkeypatch.setenv("SIDEMAN_PINMAP", str(tmp_path / "pty.toml"))
        assert resolve_din("auto", print) == uart
        (tmp_path / "gone.toml").write_text(pin_map.replace('uart = "/dev/ttyTHS0"', 'uart = "/dev/ttyNOPE9"'))
        monkeypatch.setenv("SIDEMAN_PINMAP", str(tmp_path / "gone.toml"))
        assert resolve_din("auto", print) is None
        assert resolve_din("/dev/ttyUSB3", print) == "/dev/ttyUSB3"  # a named device is taken as given
    finally:
        os.close(master)
        os.close(slave)
    not_a_uart = tmp_path / "not-a-uart"
    not_a_uart.write_text("")
    (tmp_path / "file.toml").write_text(pin_map.replace('uart = "/dev/ttyTHS0"', f'uart = "{not_a_uart}"'))
    monkeypatch.setenv("SIDEMAN_PINMAP", str(tmp_path / "file.toml"))
    said = []
    box = Box(BoxConfig(backend="jack", autoconnect="", din="auto", capture=False), voice=SilentVoice(),
              announce=said.append)
    box.start()
    try:
        assert any("DIN" in line and "not available" in line for line in said), said
        assert box.outputs.names()  # it plays on the virtual output
    finally:
        box.stop()
