"""The player's sound never waits for the AI's thinking.

- A voice that burns CPU for seconds inside one C call, holding the interpreter lock all along, in
  a box of its own (a separate process, so this test's probe is not held up by the same lock).
- An engine that falls behind sheds the notes it is too late for, and hears the next phrase."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from midi_probe import MidiProbe, wait_until
from sideman.clock import NS_PER_S, now_ns
from sideman.engine import MAX_LAG_S, Engine
from sideman.model.echo import EchoVoice
from sideman.schedule.outputs import OutputFanout
from sideman.schedule.sender import Scheduler

# The box, with a voice that at its first note-on matches a regular expression that backtracks for
# seconds (CPython's re holds the interpreter lock for the whole match). It says when it starts and
# ends (CLOCK_MONOTONIC, the same clock as this process's now_ns).
BUSY_BOX = textwrap.dedent("""
    import re, sys, time
    from sideman.box import Box, BoxConfig
    from sideman.clock import now_ns

    size = 18      # grow the string until one match takes >= 0.15 s, then 3 more (x8): >= 1.2 s
    while True:
        started = time.perf_counter()
        re.fullmatch(r"(x+x+)+y", "x" * size)
        if time.perf_counter() - started >= 0.15:
            break
        size += 1
    size += 3

    class BusyVoice:
        name = "busy"
        burnt = False

        def hear(self, message, t_ns):
            if message[0] & 0xF0 == 0x90 and not self.burnt:
                self.burnt = True
                print("burn", now_ns(), flush=True)
                re.fullmatch(r"(x+x+)+y", "x" * size)
                print("done", now_ns(), flush=True)
            return ()

        def tick(self, t_ns):
            return ()

    box = Box(BoxConfig(backend="jack", autoconnect="", thru=sys.argv[1]), voice=BusyVoice())
    box.run_until_stopped()
""")


def _line(box: subprocess.Popen, word: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = box.stdout.readline()
        if not line:
            raise AssertionError(f"the box exited before saying {word!r}")
        if line.startswith(word):
            return line.split(None, 1)[1].strip() if " " in line.strip() else ""
    raise AssertionError(f"the box never said {word!r}")


def _play_during_a_burn(jack_server, thru: str) -> tuple[dict, dict, int, int]:
    env = dict(os.environ, JACK_DEFAULT_SERVER=jack_server.name)
    box = subprocess.Popen([sys.executable, "-c", BUSY_BOX, thru], stdout=subprocess.PIPE, text=True, env=env)
    probe = None
    try:
        _line(box, "ready")
        probe = MidiProbe("busy").connect()
        time.sleep(0.3)   # the patch (when there is one) is made within 20 ms
        probe.send((0x90, 30, 1))   # the note that sets the voice burning
        burn_start = int(_line(box, "burn"))
        sent = {}
        for i in range(30):   # 0.6 s of notes, all while the voice holds the lock
            message = (0x90, 60 + i, 80)
            sent[message] = now_ns()
            probe.send(message)
            time.sleep(0.02)
        burn_end = int(_line(box, "done"))
        time.sleep(0.5)
        arrived = {}
        for message, t in probe.received_with_times():
            arrived.setdefault(message, t)
        box.terminate()
        box.wait(timeout=20)
    finally:
        if box.poll() is None:
            box.kill()
            box.wait()
        if probe is not None:
            probe.close()
    return sent, arrived, burn_start, burn_end


@pytest.mark.jack
def test_patched_thru_keeps_every_note_at_once_while_the_voice_holds_the_interpreter(jack_server):
    sent, arrived, burn_start, burn_end = _play_during_a_burn(jack_server, "auto")
    assert burn_end - burn_start >= 1.0 * NS_PER_S, "the voice did not stay busy long enough to prove anything"
    assert max(sent.values()) < burn_end, "the notes were not all played while the voice was busy"
    assert set(sent) <= set(arrived), f"lost: {sorted(set(sent) - set(arrived))}"
    late_ms = max((arrived[m] - sent[m]) / 1e6 for m in sent)
    # The test server's period is 21 ms: a note is passed in the next cycle or the one after.
    assert late_ms < 100, f"a note waited {late_ms:.0f} ms for the busy voice"


@pytest.mark.jack
def test_through_the_box_the_same_notes_wait_for_the_lock_and_none_is_lost(jack_server):
    """The same burn with --thru box: no note is lost, but every note played during the burn is
    held until it ends. This is what the patch saves the player from, and it proves the burn
    really holds the lock."""
    sent, arrived, burn_start, burn_end = _play_during_a_burn(jack_server, "box")
    assert burn_end - burn_start >= 1.0 * NS_PER_S
    assert set(sent) <= set(arrived), f"lost: {sorted(set(sent) - set(arrived))}"
    first_sent = min(sent.values())
    assert min(arrived[m] for m in sent) >= burn_end - 5_000_000, "a note got through while the lock was held"
    assert (burn_end - first_sent) / 1e6 > 500


def test_an_engine_behind_sheds_late_notes_with_their_note_offs_and_hears_the_next_phrase():
    heard: list[tuple] = []
    release = threading.Event()

    class SlowVoice:
        """Busy with its first note the way a model step is: the interpreter lock released."""
        name = "slow"

        def hear(self, message, t_ns):
            heard.append(message)
            if message == (0x90, 30, 1):
                release.wait(5)
            return ()

        def tick(self, t_ns):
            return ()

    scheduler = Scheduler(OutputFanout(), ai_channel=1)
    engine = Engine(SlowVoice(), scheduler)
    engine.start()
    try:
        engine.hear((0x90, 30, 1), now_ns())
        assert wait_until(lambda: heard)
        for pitch in range(60, 80):     # a run played while the voice is busy
            engine.hear((0x90, pitch, 80), now_ns())
            engine.hear((0x80, pitch, 0), now_ns())
        engine.hear((0xB0, 64, 127), now_ns())   # not a note: always heard
        time.sleep(MAX_LAG_S + 0.1)
        release.set()
        assert wait_until(lambda: (0xB0, 64, 127) in heard)
        assert engine.shed == 20
        assert not [m for m in heard if m[0] & 0xE0 == 0x80 and 60 <= m[1] < 80], "a late note (or its note-off) reached the voice"
        # The next phrase, on time, is heard whole: a key shed before gets its note-off heard now.
        engine.hear((0x90, 72, 90), now_ns())
        engine.hear((0x80, 72, 0), now_ns())
        assert wait_until(lambda: (0x80, 72, 0) in heard)
        assert (0x90, 72, 90) in heard and engine.shed == 20
    finally:
        release.set()
        engine.stop()


# --- patched thru on JACK -----------------------------------------------------------------------
def _connections(port: str) -> list[str]:
    import jack

    client = jack.Client("test-looker", no_start_server=True)
    try:
        return [p.name for p in client.get_all_connections(port)]
    finally:
        client.close()


def _probe_ports(probe: MidiProbe) -> tuple[str, str]:
    # rtmidi names a probe's ports "<client>:RtMidi output" and "<client>-01:RtMidi input"
    # (JACK renames the second client); find them by their connections to the box.
    keyboard = [p for p in _connections("sideman:in") if p.startswith(probe.name)]
    synth = [p for p in _connections("sideman-out:out") if p.startswith(probe.name)]
    assert keyboard and synth
    return keyboard[0], synth[0]


@pytest.mark.jack
def test_the_keyboard_is_patched_to_the_synth_once_and_unpatched_when_the_box_stops(make_box, probe):
    box = make_box(voice=EchoVoice(delay_s=30))
    probe.connect()
    keyboard, synth = _probe_ports(probe)
    assert wait_until(lambda: box.patch.patched and (keyboard, synth) in box.patch.pairs)
    assert synth in _connections(keyboard)
    probe.send((0x90, 61, 77))
    assert probe.wait_for(lambda m: m == (0x90, 61, 77))
    time.sleep(0.2)
    assert probe.messages().count((0x90, 61, 77)) == 1, "the note came by the patch and through the box"
    box.stop()
    assert synth not in _connections(keyboard)


@pytest.mark.jack
def test_a_held_note_passed_by_the_patch_is_still_ended_when_the_box_stops(make_box, probe):
    from midi_probe import sounding_after

    box = make_box(voice=EchoVoice(delay_s=30))
    probe.connect()
    assert wait_until(lambda: box.patch.patched)
    probe.send((0x90, 64, 90))   # held: its note-off never comes
    assert probe.wait_for(lambda m: m == (0x90, 64, 90))
    box.stop()
    assert probe.wait_for(lambda m: m == (0x80, 64, 0)), "the box's ledger missed the patched note"
    assert sounding_after(probe.messages()) == set()


@pytest.mark.jack
def test_a_connection_the_player_made_is_never_removed(make_box, probe):
    import jack

    box = make_box(voice=EchoVoice(delay_s=30))
    probe.connect()
    keyboard, synth = _probe_ports(probe)
    from sideman.ports.jack_patch import JackPatchThru

    client = jack.Client("test-player", no_start_server=True)
    try:
        assert wait_until(lambda: box.patch.patched)
        box.patch.stop()   # the box's own patch goes with it...
        box.patch = None
        assert synth not in _connections(keyboard)
        client.connect(keyboard, synth)   # ...then the player connects the keyboard to the synth by hand
        patch = JackPatchThru().start()
        assert patch.patched and (keyboard, synth) in patch.pairs
        patch.stop()
        assert synth in _connections(keyboard), "the box took away a connection it did not make"
    finally:
        client.close()


@pytest.mark.jack
def test_a_midi_mapped_cc_unpatches_the_thru_so_the_box_can_keep_it_from_the_synth(make_box, probe):
    from sideman.panel.midi_map import MidiControlMap

    box = make_box(voice=EchoVoice(delay_s=30))
    probe.connect()
    assert wait_until(lambda: box.patch.patched)   # patched before: the CC would have gone by it
    changed = []
    box.midi_controls = MidiControlMap({21: "temperature"}, on_change=lambda target, value: changed.append(target))
    assert wait_until(lambda: not box.patch.patched and not box.patch.pairs)
    probe.send((0xB0, 21, 100))
    probe.send((0x90, 62, 70))
    assert probe.wait_for(lambda m: m == (0x90, 62, 70))
    time.sleep(0.2)
    assert changed == ["temperature"]
    assert (0xB0, 21, 100) not in probe.messages(), "a CC the box took reached the synth"
    assert probe.messages().count((0x90, 62, 70)) == 1


def test_the_thru_flag_reaches_the_box():
    from sideman import appliance
    from sideman.cli import build_parser
    from sideman.panel.settings import Settings

    for argv, thru in ((["run"], "auto"), (["run", "--thru", "box"], "box"), (["panel", "--thru", "box"], "box")):
        assert appliance.box_config(build_parser().parse_args(argv), Settings()).thru == thru
