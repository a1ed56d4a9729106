"""Shared fixtures: a private JACK dummy server per test session, and MIDI probes on it."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from midi_probe import MidiProbe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware_py"))


@pytest.fixture(scope="session")
def jack_server():
    """A private `jackd -d dummy` (unique name via JACK_DEFAULT_SERVER), stopped after the session."""
    if shutil.which("jackd") is None:
        pytest.fail("jackd not installed: apt-get install jackd2 (.ci/run does this)")
    from sideman.ports.jack_server import DummyJackServer

    # The dummy server runs without real-time scheduling; on a loaded 2-core machine a client
    # that misses its cycle would lose MIDI. Synchronous mode makes the server wait for it, and a
    # long period (21 ms) gives slack. Latency is the benchmark's business (64 frames), not the tests'.
    # A long client timeout too: CPU-heavy tests (numpy, torch) can starve this process's JACK
    # threads for longer than jackd's 500 ms, and a client thrown out mid-session was the likeliest
    # cause of the rare segfaults seen in the middle of non-JACK tests.
    # Not real-time: the tests' own threads must never be starved by it (behaviour, not speed).
    server = DummyJackServer(name=f"sideman-test-{os.getpid()}-{uuid.uuid4().hex[:6]}", period=1024,
                             synchronous=True, client_timeout_ms=30000, realtime=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Sessions, settings and presets go to a temp dir, never the developer's home (every test:
    the box loads saved settings at start)."""
    monkeypatch.setenv("SIDEMAN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def running_boxes():
    """The boxes make_box started, so that whichever fixture is torn down first stops them."""
    return []


@pytest.fixture
def probe(jack_server, running_boxes):
    p = MidiProbe()
    yield p
    # The boxes first: a box's patched thru looks at the probe's ports every 20 ms, and closing
    # them under that look crashed a process (SIGSEGV) in `make bench` and once in CI (pytest
    # tears `probe` down before `make_box` when a test asks for make_box first).
    for box in running_boxes:
        box.stop()
    p.close()


@pytest.fixture
def make_box(jack_server, data_dir, running_boxes):
    """Start Boxes on the JACK server (no hardware auto-connect, no chatter); stopped after the test
    (Box.stop is idempotent), before any probe closes."""
    from sideman.box import Box, BoxConfig

    def make(voice=None, **config):
        config.setdefault("backend", "jack")
        config.setdefault("autoconnect", "")
        box = Box(BoxConfig(**config), voice=voice, announce=lambda text: None)
        box.start()
        running_boxes.append(box)
        return box

    yield make
    for box in running_boxes:
        box.stop()


@pytest.fixture
def screenshot(tmp_path):
    """screenshot(name, image, scale=4): save a PNG to $SIDEMAN_SCREENSHOT_DIR when set (`make
    screens` renders the README's pictures this way), else to the test's tmp dir."""
    folder = Path(os.environ.get("SIDEMAN_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def save(name: str, image, scale: int = 4) -> Path:
        if scale != 1:
            image = image.resize((image.width * scale, image.height * scale), 0)  # nearest: crisp pixels
        path = folder / name
        image.save(path)
        return path
    return save
