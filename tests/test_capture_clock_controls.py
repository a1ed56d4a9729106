"""Session capture files, MIDI clock in/out and the control registry."""

import argparse
import time

import mido
import pytest

from sideman.capture import AI, HUMAN, SessionRecorder, list_sessions
from sideman.clock import NS_PER_S
from sideman.controls import CONTROLS, add_control_flags, values_from_args
from sideman.midi_clock import ClockFollower, ClockGenerator


def test_an_hours_capture_stays_small_and_two_threads_never_mix_their_records():
    """The input and sender threads record at once; every record comes back whole, and a note
    costs ~14 bytes (as Python tuples it was ~170: 340 MB at the 2 M-event cap)."""
    import threading
    import tracemalloc

    recorder = SessionRecorder()
    tracemalloc.start()
    try:
        def play(voice, status):
            for i in range(50_000):
                recorder.record(voice, (status, i % 128, 1 + i % 127), i)

        threads = [threading.Thread(target=play, args=(HUMAN, 0x90)), threading.Thread(target=play, args=(AI, 0x91))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        recorder.record(HUMAN, (0xF0, 0x7D, 1, 2, 0xF7), 7)   # SysEx, any length
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    events = recorder.events()
    assert len(events) == 100_001 and events[-1] == (HUMAN, 7, (0xF0, 0x7D, 1, 2, 0xF7))
    for voice, t_ns, message in events[:-1]:
        assert message == ((0x90, 0x91)[voice], t_ns % 128, 1 + t_ns % 127)
    assert recorder.note_counts() == (50_000, 50_000)
    assert held < 100_001 * 20, f"{held / 100_001:.0f} bytes an event"


def test_session_is_two_tracks_human_and_sideman(tmp_path):
    recorder = SessionRecorder()
    t0 = recorder.started_ns
    recorder.record(HUMAN, (0x90, 60, 100), t0 + NS_PER_S)
    recorder.record(HUMAN, (0xF8,), t0 + NS_PER_S)       # clock: not worth keeping
    recorder.record(HUMAN, (0x80, 60, 0), t0 + 2 * NS_PER_S)
    recorder.record(AI, (0x91, 72, 90), t0 + 3 * NS_PER_S)
    recorder.record(AI, (0x81, 72, 0), t0 + 4 * NS_PER_S)
    path = recorder.save(tmp_path)
    midi = mido.MidiFile(path)
    assert [t.name for t in midi.tracks] == ["human", "sideman"]
    human = [m for m in midi.tracks[0] if not m.is_meta]
    assert [m.type for m in human] == ["note_on", "note_off"]
    assert human[0].time == 1920  # 1 s at 120 BPM, 960 ticks per beat
    assert midi.length == pytest.approx(4.0, abs=0.01)
    [summary] = list_sessions(tmp_path)
    assert (summary.human_notes, summary.ai_notes) == (1, 1)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file


def test_empty_session_writes_nothing_and_broken_files_are_skipped(tmp_path):
    assert SessionRecorder().save(tmp_path) is None
    (tmp_path / "session-20260101-000000.mid").write_bytes(b"not midi")
    assert list_sessions(tmp_path) == []


def test_clock_follower_tempo_and_transport():
    follower = ClockFollower()
    tick = int(60 * NS_PER_S / (100 * 24))  # 100 BPM
    follower.feed((0xFA,), 0)
    for i in range(60):
        assert follower.feed((0xF8,), i * tick)
    assert follower.playing and follower.ticks_since_start == 60
    assert follower.tempo_bpm(now=60 * tick) == pytest.approx(100, rel=1e-6)
    assert follower.tempo_bpm(now=60 * tick + 3 * NS_PER_S) is None  # the clock went away
    follower.feed((0xFC,), 61 * tick)
    assert not follower.playing
    assert not follower.feed((0x90, 60, 1), 0)


def test_clock_generator_sends_start_ticks_stop_at_tempo():
    sent = []
    generator = ClockGenerator(lambda m: sent.append((m, time.monotonic_ns())), bpm=250)
    generator.start()
    time.sleep(0.3)
    generator.stop()
    kinds = [m for m, _ in sent]
    assert kinds[0] == (0xFA,) and kinds[-1] == (0xFC,)
    ticks = [t for m, t in sent if m == (0xF8,)]
    assert len(ticks) > 10
    intervals = sorted(b - a for a, b in zip(ticks, ticks[1:]))
    assert intervals[len(intervals) // 2] == pytest.approx(60 * NS_PER_S / (250 * 24), rel=0.25)


def test_every_control_has_a_flag_and_values_are_clamped():
    parser = argparse.ArgumentParser()
    add_control_flags(parser)
    args = parser.parse_args(["--ai-channel", "99", "--latency-ms", "-5", "--swing-strength", "0.5"])
    values = values_from_args(args)
    assert set(values) == {c.name for c in CONTROLS}
    assert values["ai_channel"] == 16 and values["latency_ms"] == 0.0 and values["swing_strength"] == 0.5
