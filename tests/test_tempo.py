"""Tempo and beat-phase tracking: synthetic performances made here, plus a small POP909 check."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sideman_train.eval_beats import evaluate_folder, f_measure, main
from sideman.listen.tempo import BeatEstimate, BeatTracker
from sideman_train.listen_baselines import FixedTempoBaseline, tap_beats

POP909 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pop909"


def quarters(bpm: float, beats: int, start_s: float = 0.5) -> list[float]:
    return [start_s + i * 60.0 / bpm for i in range(beats)]


def feed(tracker: BeatTracker, onsets, until_s: float | None = None) -> None:
    for item in onsets:
        t, velocity = item if isinstance(item, tuple) else (item, 80)
        if until_s is not None and t > until_s:
            break
        tracker.onset(t, velocity)


def grid_error(estimate: BeatEstimate, t_s: float, start_s: float, period_s: float) -> float:
    """Distance from the tracker's next predicted beat after t_s to the nearest true beat."""
    predicted = estimate.next_beat_after(t_s)
    k = round((predicted - start_s) / period_s)
    return abs(predicted - (start_s + k * period_s))


def swing_tune(bpm: float = 140.0, seed: int = 3) -> tuple[list[tuple[float, int]], float, float]:
    """Four bars of jazz-ish comping and a swung line, a two-bar rest, four bars more.

    Left hand: three-note chords on 1 and the 'and' of 2 (Charleston); right hand: swung eighths
    (off-beats at 2/3 of the beat, accented as jazz players do), a few rests and anticipations.
    Returns the onsets, the tune's start time and the time the rest ends."""
    rng = random.Random(seed)
    beat = 60.0 / bpm
    start = 1.0
    notes: list[tuple[float, int]] = []

    def bar(t0: float) -> None:
        for offset in (0.0, 1 + 2 / 3):  # Charleston: 1 and the and of 2
            for k in range(3):
                notes.append((t0 + offset * beat + 0.004 * k, 70))
        for b in range(4):
            if rng.random() < 0.8:
                notes.append((t0 + b * beat + 0.01, 75))
            if rng.random() < 0.7:
                notes.append((t0 + (b + 2 / 3) * beat, 90))  # accented swung off-beat
        notes.append((t0 + 3.5 * beat, 100))  # an anticipation of the next bar

    for i in range(4):
        bar(start + 4 * i * beat)
    rest_end = start + 10 * 4 * beat  # bars 5 and 6 silent
    for i in range(4):
        bar(rest_end + 4 * i * beat)
    return sorted(notes), start, rest_end


@pytest.mark.parametrize("bpm", [90.0, 120.0, 180.0])
def test_steady_quarters_lock_within_eight_beats(bpm):
    onsets = quarters(bpm, 24)
    tracker = BeatTracker()
    period = 60.0 / bpm
    for i, t in enumerate(onsets):
        tracker.onset(t, 80)
        if i >= 8:
            query = t + 0.3 * period
            estimate = tracker.estimate(query)
            assert abs(estimate.tempo_bpm / bpm - 1) < 0.02, (i, estimate)
            assert grid_error(estimate, query, onsets[0], period) < 0.03
            assert estimate.confidence > 0.5


def test_swing_with_syncopation_and_rests_keeps_140_and_its_phase():
    onsets, start, rest_end = swing_tune()
    period = 60.0 / 140
    tracker = BeatTracker()
    feed(tracker, onsets, until_s=rest_end - 8 * period)
    before_rest = tracker.estimate(rest_end - 8 * period)
    assert abs(before_rest.tempo_bpm / 140 - 1) < 0.02, before_rest
    # through the two-bar rest no onset arrives: every beat predicted there is on the grid
    for k in range(8):
        query = rest_end - (8 - k) * period + 0.1 * period
        estimate = tracker.estimate(query)
        assert abs(estimate.tempo_bpm / 140 - 1) < 0.02
        assert grid_error(estimate, query, start, period) < 0.03, k
    # the first beat after the rest is predicted before anyone plays it
    assert abs(tracker.estimate(rest_end - 0.1).next_beat_after(rest_end - 0.1) - rest_end) < 0.03
    feed(tracker, [o for o in onsets if o[0] >= rest_end])
    assert abs(tracker.estimate(onsets[-1][0]).tempo_bpm / 140 - 1) < 0.02


def test_tempo_change_is_followed_within_eight_beats():
    slow = quarters(100, 16, start_s=0.5)
    change_s = slow[-1] + 0.6
    fast = quarters(130, 16, start_s=change_s)
    tracker = BeatTracker()
    feed(tracker, slow)
    assert abs(tracker.estimate(slow[-1]).tempo_bpm / 100 - 1) < 0.02
    period = 60.0 / 130
    for i, t in enumerate(fast):
        tracker.onset(t, 80)
        if i >= 8:
            query = t + 0.3 * period
            estimate = tracker.estimate(query)
            assert abs(estimate.tempo_bpm / 130 - 1) < 0.03, (i, estimate)
            assert grid_error(estimate, query, change_s, period) < 0.04, i


def test_timing_jitter_is_tolerated():
    rng = random.Random(7)
    bpm, period = 120.0, 0.5
    onsets = []
    for i in range(64):  # quarters with eighths in between now and then
        onsets.append(0.5 + i * period + rng.uniform(-0.015, 0.015))
        if i % 3 == 1:
            onsets.append(0.5 + (i + 0.5) * period + rng.uniform(-0.015, 0.015))
    onsets.sort()
    tracker = BeatTracker()
    errors = []
    for t in onsets:
        tracker.onset(t, 80)
        if t > 0.5 + 8 * period:
            estimate = tracker.estimate(t + 0.1)
            assert abs(estimate.tempo_bpm / bpm - 1) < 0.02
            errors.append(grid_error(estimate, t + 0.1, 0.5, period))
    assert max(errors) < 0.03 and sum(errors) / len(errors) < 0.015


def test_chord_notes_count_as_one_stronger_onset():
    # rolled four-note chords (notes 10 ms apart) on every beat at 100 BPM: still 100, not faster
    onsets = [t + 0.01 * k for t in quarters(100, 20) for k in range(4)]
    tracker = BeatTracker()
    feed(tracker, onsets)
    assert abs(tracker.estimate(onsets[-1]).tempo_bpm / 100 - 1) < 0.02


def test_bass_notes_mark_the_beat_under_offbeat_chords():
    # oom-pah at 100 BPM: a low bass note on each beat, a louder three-note chord on each off-beat
    period = 0.6
    notes = []
    for i in range(24):
        notes.append((0.5 + i * period, 70, 40))
        notes += [(0.5 + (i + 0.5) * period, 85, pitch) for pitch in (60, 64, 67)]
    tracker = BeatTracker()
    for t, velocity, pitch in notes:
        tracker.onset(t, velocity, pitch)
    query = notes[-1][0] + 0.05
    estimate = tracker.estimate(query)
    assert abs(estimate.tempo_bpm / 100 - 1) < 0.02
    assert grid_error(estimate, query, 0.5, period) < 0.03


def test_confidence_fades_in_a_long_silence():
    onsets = quarters(120, 16)
    tracker = BeatTracker()
    feed(tracker, onsets)
    playing = tracker.estimate(onsets[-1] + 0.1).confidence
    assert playing > 0.8
    assert 0 < tracker.estimate(onsets[-1] + 16 * 0.5).confidence < playing


def test_override_wins_and_clearing_it_returns_to_tracking():
    onsets = quarters(120, 48)
    tracker = BeatTracker()
    feed(tracker, onsets[:16])
    tracker.set_tempo(90.0, beat_s=8.0)
    feed(tracker, onsets[16:32])
    estimate = tracker.estimate(onsets[31])
    assert estimate.tempo_bpm == pytest.approx(90.0)
    assert estimate.confidence == 1.0
    assert (estimate.last_beat_s - 8.0) / (60 / 90) == pytest.approx(round((estimate.last_beat_s - 8.0) / (60 / 90)))
    tracker.clear_override()
    feed(tracker, onsets[32:])
    estimate = tracker.estimate(onsets[-1] + 0.2)
    assert abs(estimate.tempo_bpm / 120 - 1) < 0.02
    assert grid_error(estimate, onsets[-1] + 0.2, onsets[0], 0.5) < 0.03


def test_set_tempo_without_beat_keeps_tracking_the_phase():
    onsets = quarters(120, 24, start_s=0.73)
    tracker = BeatTracker()
    tracker.set_tempo(120.0)
    feed(tracker, onsets)
    estimate = tracker.estimate(onsets[-1] + 0.1)
    assert estimate.tempo_bpm == pytest.approx(120.0)
    assert grid_error(estimate, onsets[-1] + 0.1, 0.73, 0.5) < 0.02


def test_initial_guess_and_reset():
    tracker = BeatTracker(initial_bpm=100.0)
    assert tracker.estimate(0.0).tempo_bpm == pytest.approx(100.0)
    assert tracker.estimate(0.0).confidence == 0.0
    feed(tracker, quarters(150, 16))
    assert tracker.estimate(12.0).confidence > 0
    tracker.reset()
    assert tracker.estimate(0.0) == BeatEstimate(100.0, 0.6, 0.0, 0.0)


def test_beat_estimate_grid_helpers():
    estimate = BeatEstimate(tempo_bpm=120.0, period_s=0.5, last_beat_s=10.0, confidence=1.0)
    assert estimate.next_beat_after(10.0) == pytest.approx(10.5)
    assert estimate.next_beat_after(10.2) == pytest.approx(10.5)
    assert estimate.next_beat_after(11.6) == pytest.approx(12.0)
    assert estimate.beat_position(10.25) == pytest.approx(0.5)
    assert estimate.beat_position(11.0) == pytest.approx(2.0)


def test_fixed_tempo_baseline_is_anchored_at_the_first_onset():
    baseline = FixedTempoBaseline(120.0)
    feed(baseline, [0.3, 0.71, 1.5, 2.2])
    estimate = baseline.estimate(2.4)
    assert estimate.tempo_bpm == 120.0 and estimate.last_beat_s == pytest.approx(2.3)
    assert estimate.confidence == 0.0


def test_tapped_beats_are_causal_and_follow_the_grid():
    onsets = quarters(120, 24)
    beats = tap_beats(onsets, BeatTracker(), until_s=onsets[-1] + 1.0)
    # a prefix of the performance taps the same beats up to its last onset: no peeking ahead
    prefix = tap_beats(onsets[:12], BeatTracker())
    assert prefix == [b for b in beats if b <= onsets[11]]
    grid = quarters(120, 26)  # the performance's beats, two more after its last note
    late = [b for b in beats if b > onsets[8]]
    assert all(min(abs(b - g) for g in grid) < 0.03 for b in late)
    assert f_measure(grid[8:], [b for b in beats if b >= grid[8] - 0.1]) == 1.0


def test_f_measure_known_cases():
    reference = [1.0 + 0.5 * i for i in range(20)]
    assert f_measure(reference, reference) == 1.0
    assert f_measure(reference, [b + 0.1 for b in reference]) == 0.0
    assert f_measure(reference, [b + 0.06 for b in reference]) == 1.0  # inside ±70 ms
    assert f_measure(reference, reference[::2]) == pytest.approx(2 / 3)  # P = 1, R = 1/2
    half = reference[:10] + [b + 0.2 for b in reference[10:]]
    assert f_measure(reference, half) == pytest.approx(0.5)
    # one-to-one: two taps near one beat count once
    assert f_measure([1.0], [0.98, 1.02]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert f_measure([], reference) == 0.0 and f_measure(reference, []) == 0.0


def _fake_song(folder: Path, name: str, bpm: float) -> None:
    """A POP909-style song: quarter-note chords written with mido, and its beat_midi.txt."""
    import mido

    song = folder / name
    song.mkdir()
    midi = mido.MidiFile(ticks_per_beat=480)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    piano = mido.MidiTrack([mido.MetaMessage("track_name", name="PIANO", time=0)])
    chord = (48, 55, 64)
    for beat in range(60):  # a chord on every beat, held for an eighth
        for k, pitch in enumerate(chord):
            piano.append(mido.Message("note_on", note=pitch, velocity=80, time=240 if beat and not k else 0))
        for k, pitch in enumerate(chord):
            piano.append(mido.Message("note_off", note=pitch, velocity=0, time=0 if k else 240))
    midi.tracks += [meta, piano]
    midi.save(str(song / f"{name}.mid"))
    lines = [f"{i * 60 / bpm} {1.0 if i % 2 == 0 else 0.0} {1.0 if i % 4 == 0 else 0.0}" for i in range(60)]
    (song / "beat_midi.txt").write_text("\n".join(lines) + "\n")


def test_evaluate_folder_on_made_up_songs_skips_broken_ones(tmp_path, capsys):
    _fake_song(tmp_path, "001", 100.0)
    _fake_song(tmp_path, "002", 140.0)
    (tmp_path / "003").mkdir()
    (tmp_path / "003" / "003.mid").write_bytes(b"not midi at all")
    (tmp_path / "003" / "beat_midi.txt").write_text("0.5 1 1\n1.0 0 0\n")
    (tmp_path / "004").mkdir()  # nothing in it
    report = evaluate_folder(tmp_path)
    assert report["songs"] == 4 and report["evaluated"] == 2
    assert set(report["skipped"]) == {"003", "004"}
    assert report["f_measure_ours"] > 0.95 and report["f_measure_ours"] > report["f_measure_baseline"]
    assert report["tempo_accuracy"] == 1.0
    assert main([str(tmp_path), "--limit", "1", "--json"]) == 0
    assert '"evaluated": 1' in capsys.readouterr().out


@pytest.mark.corpus
@pytest.mark.skipif(not POP909.is_dir(), reason="POP909 not in ../shared/data")
def test_pop909_tracker_beats_the_fixed_tempo_baseline():
    report = evaluate_folder(POP909, limit=15)
    assert report["evaluated"] >= 12
    assert report["f_measure_ours"] > report["f_measure_baseline"] + 0.2
    assert report["tempo_accuracy_octave"] > 0.8
