"""The listener's phrase and tempo rules, `sideman play` end to end on files made here, the table
fallback, and (with the corpus) response gaps on WJazzD phrases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mido
import pytest

from music_fixtures import line, scale_walk
from sideman import messages as mm
from sideman.listen.listener import Listener
from sideman.listen.phrases import phrase_end_gap_s
from sideman.midi_clock import ClockFollower

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _feed(listener, notes, pedal=()):
    events = []
    for n in notes:
        events.append((n.onset_s, mm.note_on(0, n.pitch, n.velocity)))
        events.append((n.onset_s + n.duration_s, mm.note_off(0, n.pitch)))
    for t, down in pedal:
        events.append((t, mm.control_change(0, 64, 127 if down else 0)))
    for t, message in sorted(events, key=lambda e: e[0]):
        listener.hear(message, t)


def _ended_at(listener, after_s, until_s):
    t = after_s
    while t < until_s:
        if listener.tick(t).phrase_ended is not None:
            return t
        t += 0.005
    return None


def test_the_phrase_end_gap_follows_the_patience_control_and_waits_longer_after_a_short_phrase():
    long_line = 4.0   # seconds from the phrase's first onset to its last release
    assert phrase_end_gap_s(0.0, long_line) == pytest.approx(0.31)
    assert phrase_end_gap_s(0.5, long_line) == pytest.approx(0.61)       # the default
    assert phrase_end_gap_s(1.0, long_line) == pytest.approx(0.91)
    assert phrase_end_gap_s(3.0, long_line) == pytest.approx(0.91)       # clamped
    assert phrase_end_gap_s(0.5, 1.0) == pytest.approx(0.81)             # a short phrase: a breath is likelier
    assert 0.61 < phrase_end_gap_s(0.5, 2.75) < 0.81                     # in between, in between


def test_a_player_who_comes_back_soon_after_an_end_makes_the_box_wait_longer():
    """Taken for an end and cut in on: the box learns the breath and waits past it next time."""
    listener = Listener(tempo_bpm=120)
    t = 0.0
    ends = []
    for _ in range(6):   # short phrases with 0.85 s breaths between them: each looks like an end at 0.81 s
        notes = line(t, [60, 62, 64, 65], 0.25)
        _feed(listener, notes)
        last_off = notes[-1].onset_s + notes[-1].duration_s
        ends.append(_ended_at(listener, last_off, last_off + 0.85))
        t = last_off + 0.85
    assert ends[0] is not None                         # at first a 0.81 s silence ends the phrase
    assert listener.phrases.end_gap_s() > 0.85         # after a few cut-ins, the breath is known
    assert ends[-1] is None                            # and a 0.85 s breath no longer ends it


def test_a_phrase_ends_after_the_gap_and_the_pedal_does_not_hold_it_open():
    listener = Listener(tempo_bpm=120)
    notes = line(0.0, [60, 62, 64, 65], 0.25)
    _feed(listener, notes, pedal=[(0.0, True), (5.0, False)])
    last_off = notes[-1].onset_s + notes[-1].duration_s
    assert _ended_at(listener, 0.0, last_off - 0.01) is None
    ended = _ended_at(listener, last_off, last_off + 2)
    gap = phrase_end_gap_s(0.5, last_off - notes[0].onset_s)                 # a 1 s phrase: 0.81 s
    assert ended is not None and last_off + gap - 0.01 <= ended <= last_off + gap + 0.02
    assert len(listener.phrases.last.notes) == 4


def test_a_rest_shorter_than_the_gap_stays_inside_the_phrase():
    listener = Listener(tempo_bpm=120)
    notes = line(0.0, [60, 62], 0.25) + line(0.55, [64, 65], 0.25)   # a 150 ms rest between
    _feed(listener, notes)
    assert _ended_at(listener, 0.0, 0.8) is None


def test_incoming_midi_clock_sets_the_listeners_tempo():
    listener = Listener(tempo_bpm=120)
    clock = ClockFollower()
    listener.clock = clock
    tick_s = 60 / (100 * 24)
    clock.feed((mm.START,), 0)
    for k in range(24 * 4):
        clock.feed((mm.CLOCK,), int(k * tick_s * 1e9))
    listener.tick(24 * 4 * tick_s)
    assert listener.state(24 * 4 * tick_s).beat.tempo_bpm == pytest.approx(100, rel=0.02)


def _write_phrases_file(path: Path) -> None:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120)))
    last = 0
    events = []
    for k in range(3):
        for i, pitch in enumerate(scale_walk(12, k)):
            on = k * 3840 + i * 240
            events += [(on, mido.Message("note_on", note=pitch, velocity=80)),
                       (on + 200, mido.Message("note_off", note=pitch))]
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - last))
        last = tick
    midi.save(path)


def _sideman(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sideman", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **(env or {})), timeout=120)


def test_sideman_play_writes_the_duet_the_picture_and_a_summary(tmp_path):
    source = tmp_path / "my phrases é.mid"
    _write_phrases_file(source)
    run = _sideman("play", str(source), "--out", str(tmp_path / "duet.mid"), "--png", str(tmp_path / "roll.png"),
                   "--seed", "3", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["phrases_heard"] == 3 and summary["answers"] == 3
    assert summary["ai_onsets_during_human_notes"] == 0
    # The patience silence (0.61-0.81 s by the phrase's length), then at most a short wait for the beat grid.
    assert 0.6 <= summary["response_gap_ms"]["median"] / 1000 <= 0.81 + 0.15 + 0.01
    duet = mido.MidiFile(tmp_path / "duet.mid")
    names = [t.name for t in duet.tracks]
    assert names == ["human", "sideman"]
    assert sum(m.type == "note_on" and m.velocity > 0 for m in duet.tracks[1]) == summary["ai_notes"] > 0
    assert (tmp_path / "roll.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = _sideman("play", str(source), "--out", str(tmp_path / "again.mid"), "--seed", "3", "--json")
    assert (tmp_path / "again.mid").read_bytes() == (tmp_path / "duet.mid").read_bytes()
    assert json.loads(again.stdout)["ai_notes"] == summary["ai_notes"]


def test_sideman_play_says_what_is_wrong_with_a_broken_file(tmp_path):
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    run = _sideman("play", str(broken), "--out", str(tmp_path / "x.mid"))
    assert run.returncode == 2
    assert "broken.mid" in run.stderr and "not a readable MIDI file" in run.stderr
    assert not (tmp_path / "x.mid").exists()


def test_a_corrupt_style_table_falls_back_to_live_learning_and_says_so(tmp_path):
    (tmp_path / "markov").mkdir()
    (tmp_path / "markov" / "mehldau.npz").write_bytes(b"PK\x03\x04 not really a table")
    source = tmp_path / "in.mid"
    _write_phrases_file(source)
    run = _sideman("play", str(source), "--out", str(tmp_path / "duet.mid"), "--json",
                   env={"SIDEMAN_MODELS_DIR": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert "mehldau.npz" in run.stderr and "live learning" in run.stderr
    assert json.loads(run.stdout)["answers"] >= 2   # it still answers, from what it heard


@pytest.mark.corpus
@pytest.mark.skipif(not (DATA / "wjazzd").is_dir(), reason="needs ../shared/data/wjazzd")
def test_wjazzd_phrases_are_answered_after_the_patience_silence_without_interrupting():
    from sideman_bench.response_gaps import run_gap_bench

    report = run_gap_bench(DATA / "wjazzd", limit=6)
    ours = report["ours"]
    assert ours["answers"] > 50
    # 0.61-0.81 s of silence by the phrase's length (longer for a player whose breaths are
    # longer), then at most 0.15 s to the grid
    assert 0.6 <= ours["gap_ms"]["median"] / 1000 <= 0.81 + 0.15
    assert ours["ai_onsets_during_human_notes"] == 0

