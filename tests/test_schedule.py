"""The sender thread, the per-output ledgers and the shaping of AI notes (no MIDI server needed).

`RecordingPort` is a complete MidiOutput (the contract is just name/send/close) that keeps what it
was sent with the time, standing where a synth would be; the JACK tests cover real ports."""

import random
import threading
import time

import pytest

from midi_probe import sounding_after, wait_until
from sideman.clock import NS_PER_S, now_ns
from sideman.schedule.outputs import OutputFanout, OutputSlot
from sideman.schedule.sender import Scheduler
from sideman.schedule.shaping import SwingGrid, VelocityShape

MS = 1_000_000


class RecordingPort:
    def __init__(self, name="synth"):
        self.name = name
        self.sent: list[tuple[tuple, int]] = []
        self._lock = threading.Lock()

    def send(self, message):
        with self._lock:
            self.sent.append((tuple(message), now_ns()))

    def messages(self):
        with self._lock:
            return [m for m, _ in self.sent]

    def close(self):
        pass


@pytest.fixture
def rig():
    fanout = OutputFanout()
    ports = [RecordingPort("near"), RecordingPort("far")]
    fanout.add(OutputSlot(ports[0], latency_ms=0))
    fanout.add(OutputSlot(ports[1], latency_ms=20))
    played = []
    scheduler = Scheduler(fanout, ai_channel=1, on_played=lambda m, t: played.append((m, t)))
    scheduler.start()
    yield scheduler, ports, played
    scheduler.stop()


def test_notes_go_out_on_the_ai_channel_never_early(rig):
    scheduler, (near, far), played = rig
    t0 = now_ns() + 30 * MS
    scheduler.play_note(t0, 60, 90, 40 * MS)
    assert wait_until(lambda: len(near.sent) == 2 and len(far.sent) == 2)
    (on, t_on), (off, t_off) = near.sent
    assert on == (0x91, 60, 90) and off == (0x81, 60, 0)
    assert t_on >= t0 and t_off >= t0 + 40 * MS
    # The capture copy carries the scheduled time, not the send time.
    assert [m for m, _ in played] == [on, off] and played[0][1] == t0


def test_latency_compensation_sends_to_the_slow_synth_first(rig):
    scheduler, (near, far), _ = rig
    t0 = now_ns() + 60 * MS
    scheduler.play(t0, (0x90, 64, 100))
    assert wait_until(lambda: near.sent and far.sent)
    assert far.sent[0][1] < near.sent[0][1]          # 20 ms early for the far synth
    assert far.sent[0][1] >= t0 - 20 * MS             # ... but never earlier than that


def test_panic_drops_the_future_and_silences_the_present(rig):
    scheduler, (near, far), _ = rig
    t = now_ns()
    scheduler.play_note(t, 50, 80, 10 * NS_PER_S)     # sounding for a long time
    scheduler.play_note(t + 5 * NS_PER_S, 52, 80, MS)  # still to come
    assert wait_until(lambda: len(near.sent) == 1 and len(far.sent) == 1)
    scheduler.panic("test")
    for port in (near, far):
        assert sounding_after(port.messages()) == set()
        assert port.messages()[-1] == (0xB1, 123, 0)
    assert scheduler.pending() == 0


def test_random_panics_in_a_dense_stream_never_strand_a_note():
    port = RecordingPort()
    fanout = OutputFanout()
    fanout.add(OutputSlot(port))
    scheduler = Scheduler(fanout, ai_channel=3)
    scheduler.start()
    rng = random.Random(7)
    try:
        for _ in range(20):
            t = now_ns()
            for i in range(60):
                scheduler.play_note(t + rng.randrange(0, 30 * MS), rng.randrange(30, 90), 70, rng.randrange(1, 40) * MS)
            time.sleep(rng.uniform(0, 0.03))
            scheduler.panic("fuzz")
            assert sounding_after(port.messages()) == set()
    finally:
        scheduler.stop()


def test_ledger_counts_stacked_notes_and_pedal():
    port = RecordingPort()
    slot = OutputSlot(port)
    for message in [(0x90, 60, 80), (0x90, 60, 70), (0xB0, 64, 127), (0x92, 40, 50), (0x80, 60, 0)]:
        slot.send(message)
    assert slot.sounding_notes() == [(0, 60), (2, 40)]
    slot.release()
    assert sounding_after(port.messages()) == set()
    assert (0xB0, 64, 0) in port.messages()
    assert slot.sounding_notes() == []


def test_velocity_shape():
    assert [VelocityShape()(v) for v in (0, 1, 64, 127)] == [0, 1, 64, 127]
    soft_lifted = VelocityShape(gamma=0.5)
    assert soft_lifted(30) > 30 and soft_lifted(127) == 127
    clamped = VelocityShape(floor=40, ceiling=100)
    assert clamped(1) == 40 and clamped(127) == 100


def test_swing_moves_onsets_to_swung_eighths():
    beat = 500 * MS  # 120 BPM
    grid = SwingGrid(beat_origin_ns=0, beat_ns=beat, swing=2 / 3, strength=1.0)
    assert grid.quantise(beat + 20 * MS) == beat                 # near the beat: on it
    assert grid.quantise(beat + 260 * MS) == beat + round(beat * 2 / 3)  # straight eighth -> swung
    half = SwingGrid(beat_origin_ns=0, beat_ns=beat, swing=2 / 3, strength=0.5)
    assert half.quantise(250 * MS) == 250 * MS + round(0.5 * (beat * 2 / 3 - 250 * MS))
