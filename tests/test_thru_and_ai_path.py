"""The body over real JACK ports: thru is immediate and unchanged, the AI has its own channel."""

import threading

import pytest

from midi_probe import sounding_after
from sideman.model.echo import EchoVoice

pytestmark = pytest.mark.jack


def test_player_messages_pass_through_unchanged(make_box, probe):
    make_box(voice=EchoVoice(delay_s=30))
    probe.connect()
    played = [(0x90, 60, 100), (0xB4, 64, 127), (0xE0, 0, 72), (0xF0, 0x7D, 1, 2, 3, 0xF7),
              (0x94, 67, 80), (0x84, 67, 0), (0x80, 60, 0), (0xB4, 64, 0)]
    for message in played:
        probe.send(message)
    assert probe.wait_for(lambda m: m == (0xB4, 64, 0))
    # Same bytes, same order, same channels: thru never touches the player's messages.
    assert [m for m in probe.messages() if m in played] == played


def test_ai_answers_on_its_own_channel_after_the_player(make_box, probe):
    make_box(voice=EchoVoice(delay_s=0.15, transpose=12))
    probe.connect()
    probe.send((0x90, 60, 90))
    probe.send((0x80, 60, 0))
    ai = probe.wait_for(lambda m: m[0] & 0x0F == 1 and m[0] & 0xF0 == 0x90)
    human = probe.wait_for(lambda m: m == (0x90, 60, 90))
    assert ai and human
    assert ai[0][0] == (0x91, 72, 90)        # channel 2, an octave up
    assert ai[0][1] > human[0][1]             # after the player's note, not with it
    assert probe.wait_for(lambda m: m == (0x81, 72, 0))
    assert sounding_after(probe.messages()) == set()


def test_thru_does_not_wait_for_a_busy_voice(make_box, probe):
    """A voice stuck thinking must not hold up the player's notes to the synth."""
    release = threading.Event()

    class StuckVoice:
        name = "stuck"

        def hear(self, message, t_ns):
            release.wait(10)  # blocks the engine thread until the test has seen the thru note
            return ()

        def tick(self, t_ns):
            return ()

    make_box(voice=StuckVoice())
    probe.connect()
    try:
        for pitch in (60, 62, 64):
            probe.send((0x90, pitch, 70))
        assert probe.wait_for(lambda m: m == (0x90, 64, 70), timeout_s=5), "thru waited for the voice"
    finally:
        release.set()


def test_velocity_shaping_and_ai_channel_control(make_box, probe):
    from sideman.controls import CONTROLS

    controls = {c.name: c.default for c in CONTROLS}
    controls.update(ai_channel=5, velocity_ceiling=64, velocity_floor=20)
    make_box(voice=EchoVoice(delay_s=0.05, transpose=0), controls=controls)
    probe.connect()
    probe.send((0x90, 50, 127))
    probe.send((0x90, 52, 1))
    hits = probe.wait_for(lambda m: m[0] == 0x94 and m[1] == 52)
    assert hits
    velocities = {m[1]: m[2] for m in probe.messages() if m[0] == 0x94}
    assert velocities == {50: 64, 52: 20}


def test_din_keyboard_reaches_jack_synth_and_din_out_with_running_status(make_box, probe):
    """A keyboard on a 5-pin DIN cable (a real pty byte stream) plays through to every output."""
    import os
    import select

    master, slave = os.openpty()
    try:
        make_box(voice=EchoVoice(delay_s=30), din=os.ttyname(slave))
        probe.connect()
        # Running status (one 0x90 for two notes) with a clock tick inside the second note.
        os.write(master, bytes([0x90, 60, 100, 64, 0xF8, 90]))
        assert probe.wait_for(lambda m: m == (0x90, 64, 90)), probe.messages()
        assert [m for m in probe.messages() if m[0] == 0x90] == [(0x90, 60, 100), (0x90, 64, 90)]
        def without_realtime(data):  # the clock tick and the probe's active-sensing pings
            return bytes(b for b in data if b < 0xF8)

        wire = b""
        while len(without_realtime(wire)) < 5 and select.select([master], [], [], 5)[0]:
            wire += os.read(master, 64)
        # Back out on DIN with running status: 0x90 once for both notes.
        assert without_realtime(wire) == bytes([0x90, 60, 100, 64, 90])
        assert 0xF8 in wire  # the clock passed through too
    finally:
        os.close(master)
        os.close(slave)
