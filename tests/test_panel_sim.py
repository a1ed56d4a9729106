"""`sideman panel --sim` as a player uses it: in a real terminal (a pseudo-terminal), over a real JACK
server, keys as knobs. The screen it prints says what it shows in words on the line under the OLED
picture; the knobs change what the box plays and what it saves, and Ctrl-C leaves nothing sounding."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

from midi_probe import MidiProbe, sounding_after
from sideman.panel.settings import load_settings

pytestmark = pytest.mark.jack


class Terminal:
    """The player's terminal: what the program printed so far, and keys to type."""

    def __init__(self, args, env):
        self.master, slave = pty.openpty()
        # A session of its own with the pty as its controlling terminal, so Ctrl-C typed there
        # is a SIGINT to it, as in a real terminal.
        self.process = subprocess.Popen([sys.executable, "-m", "sideman", *args], stdin=slave, stdout=slave,
                                        stderr=slave, env=env, start_new_session=True,
                                        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.text = ""

    def read_until(self, pattern: str, timeout_s: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            found = list(rx.finditer(self.text))
            if found:
                return found[-1]
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.text += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the program ended and closed the terminal
                    break
        raise AssertionError(f"never printed {pattern!r}; last output:\n{self.text[-2000:]}")

    def last_screen(self) -> str:
        lines = [line for line in self.text.splitlines() if line.startswith("mode ")]
        return lines[-1] if lines else ""

    def type(self, keys: str) -> None:
        for key in keys:
            os.write(self.master, key.encode())
            time.sleep(0.05)

    def close(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        os.close(self.master)


def test_sim_panel_keys_turn_the_knobs_and_the_box_plays_on(jack_server, data_dir):
    env = dict(os.environ, SIDEMAN_DATA_DIR=str(data_dir), PYTHONPATH=os.pathsep.join(sys.path))
    term = Terminal(["panel", "--sim", "--backend", "jack", "--no-autoconnect", "--synth", "none"], env)
    probe = MidiProbe()
    try:
        term.read_until(r"mode call-response \|.*DENS 0\.50")
        assert "\u2588" in term.text or "\u2580" in term.text  # the OLED picture, in half blocks
        term.type("rrrr")            # density knob up four detents
        term.read_until(r"DENS 0\.60")
        term.type("w")               # mode knob: one step
        term.read_until(r"mode comp \|")
        probe.connect()
        for pitch in (50, 53, 57, 60):   # Dm7, held
            probe.send((0x90, pitch, 80))
        term.read_until(r"chord Dm7")
        for pitch in (50, 53, 57, 60):
            probe.send((0x80, pitch, 0))
        term.type("P")               # hold panic: mute
        term.read_until(r"AI MUTED")
        term.type("\x03")            # Ctrl-C
        assert term.process.wait(timeout=20) == 0
        assert sounding_after(probe.messages()) == set()
    finally:
        probe.close()
        term.close()
    saved = load_settings(data_dir / "settings.toml")
    assert saved.controls["density"] == pytest.approx(0.6) and saved.mode == "comp"
