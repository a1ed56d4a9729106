"""Running under systemd: sd_notify datagrams on a real AF_UNIX socket (both systemd-python and the
pure-socket fallback), the watchdog fed by a real Engine (and withheld when it stalls), journald
logging, and `systemd-analyze verify` on the units in systemd/ plus a parse of the udev rule."""

from __future__ import annotations

import faulthandler
import fnmatch
import inspect
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from sideman.box import Box, BoxConfig
from sideman.clock import now_ns
from sideman.engine import Engine
from sideman.model.echo import EchoVoice
from sideman.schedule.outputs import OutputFanout, OutputSlot
from sideman.schedule.sender import Scheduler
from sideman.service import journal
from sideman.service.notify import SOCKET, SYSTEMD_PYTHON, Notifier, watchdog_interval_s
from sideman.service.runner import ServiceHooks
from sideman.service.watchdog import WatchdogFeeder

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
INTERVAL_S = 0.2          # WATCHDOG_USEC=200000: a ping at most every 0.1 s
BACKENDS = [SYSTEMD_PYTHON, SOCKET]
# What the .deb installs and the units run; absent on a development machine.
INSTALLED_PROGRAM = re.compile(r"/usr/(?:bin/sideman|lib/sideman/[\w.-]+)(?=\s|$)", re.MULTILINE)


# --- a real notify socket -------------------------------------------------------------------------
class NotifySocket:
    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)

    def recv(self, timeout_s: float) -> str | None:
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    def drain(self) -> list[str]:
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return got

    def wait_for(self, wanted: str, timeout_s: float = 5.0, count: int = 1) -> list[str]:
        """Datagrams until `count` of them contain the line `wanted` (or the time is up)."""
        got, deadline = [], time.monotonic() + timeout_s
        while sum(wanted in d.split("\n") for d in got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            d = self.recv(left)
            if d is not None:
                got.append(d)
        return got

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    short_dir = None
    if len(str(path)) > 100:  # sun_path holds 108 bytes
        short_dir = tempfile.mkdtemp(prefix="sm-")
        path = Path(short_dir) / "notify.sock"
    sock = NotifySocket(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", str(int(INTERVAL_S * 1_000_000)))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()
    if short_dir is not None:
        shutil.rmtree(short_dir, ignore_errors=True)


def pings(datagrams) -> int:
    return sum(d == "WATCHDOG=1" for d in datagrams)


# --- a real engine over a real scheduler ------------------------------------------------------------
class RecordingPort:
    def __init__(self, name="synth"):
        self.name = name
        self.sent = []

    def send(self, message):
        self.sent.append(tuple(message))

    def close(self):
        pass


class StallableVoice:
    """Trivial voice whose tick blocks on an Event when told to: an engine stuck in a voice."""

    name = "stallable"

    def __init__(self):
        self.stall = threading.Event()
        self.stalled = threading.Event()   # set once a tick is blocked
        self.release = threading.Event()

    def hear(self, message, t_ns):
        return ()

    def tick(self, t_ns):
        if self.stall.is_set():
            self.stalled.set()
            self.release.wait(30)
            self.stall.clear()
        return ()


@pytest.fixture
def engine_rig():
    fanout = OutputFanout()
    fanout.add(OutputSlot(RecordingPort()))
    scheduler = Scheduler(fanout, ai_channel=1)
    voice = StallableVoice()
    engine = Engine(voice, scheduler)
    scheduler.start()
    yield engine, voice, scheduler
    voice.release.set()
    engine.stop()
    scheduler.stop()


# --- the notifications ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_ready_status_stopping_and_watchdog_datagrams(notify_socket, backend):
    notifier = Notifier(backend)
    assert notifier.backend == backend and notifier.enabled
    assert notifier.ready("playing: voice markov\nmode comp")
    assert notify_socket.recv(5) == "READY=1\nSTATUS=playing: voice markov mode comp"  # one line
    assert notifier.status("2 outputs")
    assert notify_socket.recv(5) == "STATUS=2 outputs"
    assert notifier.watchdog()
    assert notify_socket.recv(5) == "WATCHDOG=1"
    assert notifier.stopping()
    assert notify_socket.recv(5) == "STOPPING=1"
    assert notifier.sent == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_abstract_namespace_socket(monkeypatch, backend):
    name = f"sideman-test-{uuid.uuid4().hex}"
    sock = NotifySocket("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier(backend).ready("up")
        assert sock.recv(5) == "READY=1\nSTATUS=up"
    finally:
        sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_notify_socket_everything_is_a_no_op(monkeypatch, backend):
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    notifier = Notifier(backend)
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.stopping()
    assert notifier.watchdog_interval_s() is None
    box = Box(BoxConfig(capture=False), voice=EchoVoice(), announce=lambda text: None)
    hooks = ServiceHooks(notifier)
    hooks.attach(box)
    hooks.ready(box)
    hooks.stopping()
    assert box.engine.on_loop is None  # the engine loop is untouched off systemd


def test_fallback_is_forced_by_parameter_and_systemd_python_is_the_default(notify_socket):
    assert Notifier().backend == SYSTEMD_PYTHON  # systemd-python is installed in the venv
    assert Notifier(SOCKET).backend == SOCKET
    with pytest.raises(ValueError):
        Notifier("carrier-pigeon")


def test_a_vanished_socket_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    for backend in BACKENDS:
        assert Notifier(backend).watchdog() is False
    assert "sd_notify" in caplog.text


def test_watchdog_interval_follows_sd_watchdog_enabled(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "5000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 5.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 5.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))   # meant for another process
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-1", "soon", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None


# --- the watchdog fed by a real engine ------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_feeds_the_watchdog_at_most_every_half_interval(notify_socket, engine_rig, backend):
    engine, _, _ = engine_rig
    notifier = Notifier(backend)
    feeder = WatchdogFeeder(notifier, notifier.watchdog_interval_s())
    assert feeder.enabled and feeder.period_ns == 100_000_000
    engine.on_loop = feeder.engine_loop
    t0 = time.monotonic()
    engine.start()
    got = notify_socket.wait_for("WATCHDOG=1", timeout_s=10, count=4)
    assert pings(got) >= 4, got
    time.sleep(0.5)
    got += notify_socket.drain()
    elapsed = time.monotonic() - t0
    # The engine loops every ~5 ms; the feeder sends one ping per 0.1 s at most.
    assert engine.loops > pings(got)
    assert pings(got) <= elapsed / (INTERVAL_S / 2) + 2, (pings(got), elapsed)
    assert set(got) == {"WATCHDOG=1"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stalled_engine_stops_pinging_and_resumes_after(notify_socket, engine_rig, backend):
    engine, voice, _ = engine_rig
    notifier = Notifier(backend)
    engine.on_loop = WatchdogFeeder(notifier, notifier.watchdog_interval_s()).engine_loop
    engine.start()
    assert pings(notify_socket.wait_for("WATCHDOG=1", timeout_s=10, count=2)) >= 2
    voice.stall.set()
    assert voice.stalled.wait(10), "the engine never reached the stalling tick"
    notify_socket.drain()  # a ping sent in the same pass, before the tick blocked
    # Stalled: not one ping in three watchdog intervals (systemd would kill us after one).
    assert notify_socket.recv(3 * INTERVAL_S) is None
    assert notify_socket.recv(3 * INTERVAL_S) is None
    voice.release.set()
    assert pings(notify_socket.wait_for("WATCHDOG=1", timeout_s=10, count=2)) >= 2


def test_failed_health_check_withholds_pings(notify_socket, engine_rig):
    engine, _, scheduler = engine_rig
    healthy = threading.Event()
    notifier = Notifier(SOCKET)
    feeder = WatchdogFeeder(notifier, notifier.watchdog_interval_s(), health=healthy.is_set)
    engine.on_loop = feeder.engine_loop
    engine.start()
    assert notify_socket.recv(3 * INTERVAL_S) is None
    assert notify_socket.recv(3 * INTERVAL_S) is None
    assert feeder.withheld > 0 and feeder.pings == 0
    healthy.set()
    assert pings(notify_socket.wait_for("WATCHDOG=1", timeout_s=10, count=2)) >= 2


def test_a_raising_health_check_never_ends_the_engine(notify_socket, engine_rig):
    engine, _, _ = engine_rig

    def broken():
        raise RuntimeError("boom")

    notifier = Notifier(SOCKET)
    engine.on_loop = WatchdogFeeder(notifier, notifier.watchdog_interval_s(), health=broken).engine_loop
    engine.start()
    loops = engine.loops
    time.sleep(0.3)
    assert engine.loops > loops and engine._thread.is_alive()
    assert notify_socket.drain() == []


# --- ServiceHooks on a real Box --------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_service_hooks_on_a_box(notify_socket, backend):
    box = Box(BoxConfig(capture=False, voice="echo", mode="comp"), voice=EchoVoice(), announce=lambda text: None)
    hooks = ServiceHooks(Notifier(backend))
    hooks.attach(box)
    assert box.engine.on_loop is not None
    box.scheduler.start()
    box.engine.start()
    try:
        hooks.ready(box)
        got = notify_socket.wait_for("READY=1")
        assert "READY=1\nSTATUS=playing: voice echo, mode comp, 0 outputs" in got
        assert pings(notify_socket.wait_for("WATCHDOG=1", count=2, timeout_s=10) + got) >= 2
        # A synth is plugged in: the status line follows (checked every 2 s on the engine loop).
        box.outputs.add(OutputSlot(RecordingPort("Nord")))
        got = notify_socket.wait_for("STATUS=playing: voice echo, mode comp, 1 output", timeout_s=10)
        assert "STATUS=playing: voice echo, mode comp, 1 output" in got
        # The sender thread dies: the health check withholds the pings.
        box.scheduler.stop()
        time.sleep(INTERVAL_S)
        notify_socket.drain()
        assert pings(notify_socket.wait_for("WATCHDOG=1", timeout_s=3 * INTERVAL_S)) == 0
        hooks.stopping()
        assert any(d.startswith("STOPPING=1") for d in notify_socket.wait_for("STOPPING=1"))
    finally:
        box.engine.stop()
        box.scheduler.stop()


# --- journald logging -----------------------------------------------------------------------------
@pytest.fixture
def clean_logging(monkeypatch):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    faults_on = faulthandler.is_enabled()
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    yield
    root.handlers[:], root.level = saved
    if faults_on:
        faulthandler.enable(file=sys.__stderr__, all_threads=True)
    else:
        faulthandler.disable()


def test_logging_on_a_terminal_is_unchanged(clean_logging):
    logging.getLogger().handlers[:] = []  # pytest's capture handlers arrive after the fixture
    assert journal.setup_logging(service=False) == "terminal"
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler) and handler.formatter._fmt == journal.TERMINAL_FORMAT


def test_logging_under_systemd_goes_to_the_journal(clean_logging, monkeypatch):
    from systemd.journal import JournalHandler

    monkeypatch.setenv("INVOCATION_ID", uuid.uuid4().hex)
    chosen = journal.setup_logging(service=False)
    (handler,) = logging.getLogger().handlers
    if os.path.exists(journal.JOURNAL_SOCKET):
        assert chosen == "journal" and isinstance(handler, JournalHandler)
    else:  # no journald here (a container): the stderr form journald would parse
        assert chosen == "stderr-journald" and not isinstance(handler, JournalHandler)
    assert faulthandler.is_enabled()


def test_stderr_lines_for_journald_carry_the_priority_and_no_timestamp(clean_logging):
    assert journal.setup_logging(service=True, use_journal=False) == "stderr-journald"
    (handler,) = logging.getLogger().handlers
    record = logging.LogRecord("sideman.box", logging.WARNING, __file__, 1, "port %s gone", ("Nord",), None)
    assert handler.format(record) == "<4>sideman.box: port Nord gone"
    record = logging.LogRecord("sideman.engine", logging.ERROR, __file__, 1, "a\nb", None, None)
    assert handler.format(record) == "<3>sideman.engine: a\n<3>b"
    assert [journal.syslog_priority(level) for level in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]


# --- the units: systemd-analyze verify --------------------------------------------------------------
def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not installed: apt-get install systemd")
    return tool


def verify_problems(unit_dir: Path, names: list[str]) -> str:
    """`systemd-analyze verify` on copies of the units with the programs the .deb installs
    (/usr/bin/sideman, /usr/lib/sideman/*: not installed here) pointed at /bin/true. Returns its complaints: "" when clean. Unknown keys and unparsable values
    are only warnings (exit code 0), so any output at all counts as a problem."""
    work = Path(tempfile.mkdtemp(prefix="sm-units-"))
    try:
        for name in names:
            text = INSTALLED_PROGRAM.sub("/bin/true", (unit_dir / name).read_text())
            (work / name).write_text(text)
        result = subprocess.run([_analyze(), "verify", "--man=no", *names], cwd=work,
                                capture_output=True, text=True, timeout=60)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            return f"exit {result.returncode}: {output}"
        return output
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unit_files() -> list[str]:
    return sorted(p.name for p in UNITS.iterdir() if p.suffix in (".service", ".socket", ".timer", ".path"))


def test_units_pass_systemd_analyze_verify():
    names = unit_files()
    assert {"sideman.service", "sideman-usb-gadget.service"} <= set(names)
    assert verify_problems(UNITS, names) == ""


@pytest.mark.parametrize("breakage", [
    ("WatchdogSec=5", "WatchdogSec=five"),          # unparsable value: only a warning
    ("Type=notify", "Typ=notify"),                  # unknown key: only a warning
    ("DeviceAllow=char-alsa rw", "DeviceAllow=char-alsa rwz"),
    ("ExecStart=/usr/bin/sideman run --service", "ExecStart=sideman/bin run"),  # not absolute
    ("ExecStart=/usr/bin/sideman run --service", "ExecStart=/nonexistent/sideman run"),
])
def test_verify_catches_a_broken_unit(tmp_path, breakage):
    old, new = breakage
    text = (UNITS / "sideman.service").read_text()
    assert old in text
    (tmp_path / "sideman.service").write_text(text.replace(old, new))
    assert verify_problems(tmp_path, ["sideman.service"]) != ""


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_sideman_service_settings():
    unit = parse_unit(UNITS / "sideman.service")
    s = {k: v[-1] for k, v in unit["Service"].items()}
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main" and s["WatchdogSec"] == "5"
    assert s["Restart"] == "always" and s["RestartSec"] == "1" and s["TimeoutStartSec"] == "60"
    assert s["ExecStart"] == "/usr/bin/sideman run --service --din auto"
    assert s["ExecStopPost"].lstrip("-") == "/usr/bin/sideman panic --din auto"
    assert s["User"] == s["Group"] == "sideman"
    assert set(s["SupplementaryGroups"].split()) == {"audio", "gpio", "i2c", "dialout"}
    assert s["RestrictRealtime"] == "no" and "CPUSchedulingPolicy" not in s and "PrivateDevices" not in s
    # The sender asks for SCHED_FIFO at its default priority: the limit must allow it.
    sender_priority = inspect.signature(Scheduler).parameters["realtime_priority"].default
    assert int(s["LimitRTPRIO"]) >= sender_priority
    allowed = {v.split()[0] for v in unit["Service"]["DeviceAllow"]}
    assert {"char-alsa", "char-gpiochip", "char-i2c", "char-ttyTHS", "char-ttyACM"} <= allowed
    assert s["DevicePolicy"] == "closed"
    assert "PYTHONUNBUFFERED=1" in unit["Service"]["Environment"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    gadget = parse_unit(UNITS / "sideman-usb-gadget.service")
    assert gadget["Unit"]["Before"] == ["sideman.service"]
    assert gadget["Service"]["ExecStart"] == ["/usr/bin/sideman gadget up"]
    assert "sideman-usb-gadget.service" in unit["Unit"]["Wants"][0].split()


# --- the udev rule ----------------------------------------------------------------------------------
MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM", "SUBSYSTEMS",
              "DRIVER", "DRIVERS", "TAG", "TAGS", "ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "TEST",
              "PROGRAM", "RESULT"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "TAG", "ATTR", "SYSCTL", "ENV", "RUN",
               "LABEL", "GOTO", "IMPORT", "OPTIONS", "SECLABEL"}
TOKEN = re.compile(r'\s*([A-Z]+)(\{[^}]*\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
RULES = UNITS / "60-sideman-usb-midi.rules"


def parse_rules(path: Path) -> list[list[tuple[str, str, str]]]:
    """udev's rule syntax, strictly: comma-separated KEY op "value"; fails on anything else."""
    rules = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number}: continuation lines are not used here"
        tokens, pos = [], 0
        while pos < len(line):
            m = TOKEN.match(line, pos)
            assert m, f"line {number}: cannot parse {line[pos:]!r}"
            key, _attr, op, value, _sep = m.groups()
            if op in ("==", "!="):
                assert key in MATCH_KEYS, f"line {number}: {key} cannot be matched"
            else:
                assert key in ASSIGN_KEYS, f"line {number}: {key} cannot be assigned"
            if key in ("LABEL", "GOTO"):
                assert op == "=", f"line {number}: {key} takes '='"
            if key == "MODE":
                assert re.fullmatch(r"0[0-7]{3}", value), f"line {number}: MODE {value!r}"
            tokens.append((key, op, value))
            pos = m.end()
        rules.append(tokens)
    return rules


def _glob(value: str, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(value, alt) for alt in pattern.split("|"))


def apply_rules(rules, event: dict) -> dict:
    """Evaluate the rules for one event as udev would (match keys, GOTO/LABEL, assignments)."""
    out: dict = {"TAG": set(), "RUN": []}
    skip_to = None
    for tokens in rules:
        if skip_to is not None:
            if ("LABEL", "=", skip_to) in tokens:
                skip_to = None
            continue
        matched = True
        for key, op, value in tokens:
            if op not in ("==", "!="):
                continue
            if key == "SUBSYSTEMS":
                hit = any(_glob(s, value) for s in event.get("SUBSYSTEMS", ()) + (event["SUBSYSTEM"],))
            else:
                hit = _glob(event.get(key, ""), value)
            if hit != (op == "=="):
                matched = False
                break
        if not matched:
            continue
        for key, op, value in tokens:
            if key == "GOTO":
                skip_to = value
            elif key == "TAG":
                out["TAG"].add(value)
            elif key == "RUN":
                out["RUN"].append(value)
            elif op in ("=", ":=") and key != "LABEL":
                out[key] = value
    assert skip_to is None, f"GOTO {skip_to} has no LABEL after it"
    return out


def test_udev_rule_parses_and_sets_midi_permissions():
    rules = parse_rules(RULES)
    labels = [v for tokens in rules for k, _, v in tokens if k == "LABEL"]
    gotos = [v for tokens in rules for k, _, v in tokens if k == "GOTO"]
    assert gotos and set(gotos) <= set(labels)

    def event(kernel, action="add", subsystem="sound", parents=("usb",)):
        return apply_rules(rules, {"ACTION": action, "SUBSYSTEM": subsystem, "KERNEL": kernel,
                                   "SUBSYSTEMS": parents})

    for kernel, parents in (("midiC1D0", ("usb",)), ("midiC12D3", ("usb",)), ("midiC0D0", ("udc", "platform"))):
        got = event(kernel, parents=parents)
        assert (got.get("GROUP"), got.get("MODE"), got["TAG"]) == ("audio", "0660", {"systemd"}), kernel
    assert (event("seq", parents=()).get("GROUP"), event("seq", parents=()).get("MODE")) == ("audio", "0660")
    assert event("controlC1")["GROUP"] == "audio"
    assert event("midiC1D0", action="change")["GROUP"] == "audio"
    for quiet in (event("controlC0", parents=("platform",)), event("pcmC1D0p"), event("timer", parents=()),
                  event("midiC1D0", action="remove"), event("ttyACM0", subsystem="tty")):
        assert "GROUP" not in quiet and not quiet["TAG"], quiet
    # No rescan nudge: SIGUSR1 would end an unprepared service (see the rule's comment).
    assert not any(k == "RUN" for tokens in rules for k, _, _ in tokens)


def test_udevadm_verify_when_available():
    udevadm = shutil.which("udevadm")
    if udevadm is None or subprocess.run([udevadm, "verify", "--help"], capture_output=True).returncode != 0:
        pytest.skip("udevadm verify needs systemd >= 254 (the parse test above covers the syntax)")
    result = subprocess.run([udevadm, "verify", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_engine_hook_pings_once_per_interval_not_per_loop(notify_socket):
    """The engine calls the hook every ~5 ms: between pings it sends nothing."""
    feeder = WatchdogFeeder(Notifier(SOCKET), INTERVAL_S)
    start = now_ns()
    for i in range(100_000):
        feeder.engine_loop(start + i)
    assert feeder.pings == 1
    feeder.engine_loop(start + int(INTERVAL_S * 1e9) + 1)   # an interval later: the next ping
    assert feeder.pings == 2
