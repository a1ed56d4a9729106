"""Never leave a note sounding: voice exceptions, stop, signals and output changes all end in silence."""

import os
import signal
import subprocess
import sys
import time

import pytest

from midi_probe import MidiProbe, sounding_after, wait_until
from sideman.clock import NS_PER_S

pytestmark = pytest.mark.jack

AI = 1  # channel 2 on the wire


class PhraseThenCrashVoice:
    """Starts long AI notes on each human note and raises on the third: an engine dying mid-phrase."""

    name = "crashy"

    def __init__(self):
        self.heard = 0

    def hear(self, message, t_ns):
        if message[0] & 0xF0 != 0x90 or message[2] == 0:
            return ()
        self.heard += 1
        if self.heard == 3:
            raise RuntimeError("model blew up mid-phrase")
        pitch = 40 + self.heard
        # Sounds now, would end only in 30 s, plus a note queued for later that must never sound.
        return [(t_ns + NS_PER_S // 100, (0x90, pitch, 80)), (t_ns + 30 * NS_PER_S, (0x80, pitch, 0)),
                (t_ns + 2 * NS_PER_S, (0x90, 90, 80))]

    def tick(self, t_ns):
        return ()


def test_voice_raising_mid_phrase_leaves_no_ai_note_on(make_box, probe):
    box = make_box(PhraseThenCrashVoice())
    probe.connect()
    probe.send((0x90, 60, 70))
    probe.send((0x90, 62, 70))
    assert probe.wait_for(lambda m: m == (0x91, 42, 80)), "the AI notes should have started"
    assert sounding_after(probe.messages(), channel=AI) == {(AI, 41), (AI, 42)}
    probe.send((0x90, 64, 70))  # third note: the voice raises
    assert probe.wait_for(lambda m: m == (0xB1, 123, 0)), "no CC123 after the voice error"
    assert sounding_after(probe.messages(), channel=AI) == set()
    assert box.engine.voice_errors == 1 and "blew up" in box.engine.last_error
    time.sleep(2.2)  # the note queued for later must have been dropped by the panic
    assert not [m for m in probe.messages() if m[:2] == (0x91, 90)]
    # The player is still heard and passed through after the error.
    probe.send((0x90, 65, 70))
    assert probe.wait_for(lambda m: m == (0x90, 65, 70))


def test_stop_turns_off_ai_and_held_player_notes(make_box, probe):
    box = make_box(PhraseThenCrashVoice())
    probe.connect()
    probe.send((0xB0, 64, 127))  # the player holds the pedal ...
    probe.send((0x90, 60, 70))   # ... and a note, and the AI has started one
    assert probe.wait_for(lambda m: m == (0x91, 41, 80))
    box.stop()
    assert wait_until(lambda: sounding_after(probe.messages()) == set())
    messages = probe.messages()
    assert (0xB0, 64, 0) in messages  # the pedal lifted too


def test_panic_while_notes_stream_never_strands_a_note(make_box, probe):
    """Panics landing at random moments in a dense stream of AI notes: afterwards nothing sounds."""
    class Flurry:
        name = "flurry"

        def hear(self, message, t_ns):
            if message[0] & 0xF0 != 0x90:
                return ()
            events = []
            for i in range(40):
                t = t_ns + i * 2_000_000
                events += [(t, (0x90, 30 + i, 90)), (t + 50_000_000, (0x80, 30 + i, 0))]
            return events

        def tick(self, t_ns):
            return ()

    box = make_box(Flurry())
    probe.connect()
    for round_ in range(5):
        probe.send((0x90, 60, 70))
        time.sleep(0.01 + 0.013 * round_)
        box.scheduler.panic("test")
        # Wait until this panic's CC123 has arrived, then nothing may be left on.
        assert wait_until(lambda: probe.messages().count((0xB1, 123, 0)) == round_ + 1)
        assert sounding_after(probe.messages(), channel=AI) == set(), f"stuck after panic {round_}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_sideman_run_ends_every_note_and_saves_the_session(jack_server, data_dir, sig):
    env = dict(os.environ, SIDEMAN_DATA_DIR=str(data_dir), PYTHONPATH=os.pathsep.join(sys.path))
    box = subprocess.Popen([sys.executable, "-m", "sideman", "run", "--backend", "jack", "--no-autoconnect",
                            "--voice", "echo", "--synth", "none"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    probe = MidiProbe()
    try:
        for line in box.stdout:
            if line.startswith("ready"):
                break
        probe.connect()
        probe.send((0x90, 60, 100))  # held: the echo voice answers it a bar (2 s) later
        assert probe.wait_for(lambda m: m == (0x91, 72, 100), timeout_s=5)
        assert sounding_after(probe.messages()) == {(0, 60), (AI, 72)}
        box.send_signal(sig)
        assert box.wait(timeout=10) == 0
        assert wait_until(lambda: sounding_after(probe.messages()) == set())
        assert (0xB1, 123, 0) in probe.messages()
        rest = box.stdout.read()
        assert "session saved" in rest
        assert list((data_dir / "sessions").glob("session-*.mid"))
    finally:
        probe.close()
        if box.poll() is None:
            box.kill()


def test_switching_outputs_silences_the_old_synth(make_box, jack_server):
    keys, synth_a, synth_b = MidiProbe("keys"), MidiProbe("synthA"), MidiProbe("synthB")
    try:
        keys.open_virtual("out", "unused")
        synth_a.open_virtual("unused", "in")
        synth_b.open_virtual("unused", "in")
        box = make_box(PhraseThenCrashVoice(), inputs=[keys.name], outputs=[synth_a.name])
        keys.round_trip(synth_a)
        keys.send((0x90, 60, 70))
        assert synth_a.wait_for(lambda m: m == (0x91, 41, 80))
        connected = box.select_outputs([synth_b.name])
        assert len(connected) == 1 and connected[0].startswith(synth_b.name)
        assert wait_until(lambda: sounding_after(synth_a.messages()) == set()), "old synth left with notes on"
        keys.round_trip(synth_b)
        keys.send((0x90, 62, 70))
        assert synth_b.wait_for(lambda m: m == (0x90, 62, 70))
        assert not synth_a.wait_for(lambda m: m == (0x90, 62, 70), timeout_s=0.2)
    finally:
        for p in (keys, synth_a, synth_b):
            p.close()
