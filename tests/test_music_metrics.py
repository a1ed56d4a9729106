"""The musical metrics of `sideman-train eval` (style profiles, harmonic coherence) and the loss-curve
picture, on fixtures made in code."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sideman.model.events import AI, HUMAN, Note, Pedal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

from sideman_train.metrics import (HISTOGRAMS, StyleProfile, coherence_counts, coherence_of_real,  # noqa: E402
                                   compare_profiles, harmonic_coherence, overlap_area, profile_of_many,
                                   split_real, style_profile)
from sideman_train.plots import loss_curve_png  # noqa: E402

C_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)


def line(pitches, step_s=0.25, start_s=0.0, velocity=80, voice=HUMAN, duration_s=None) -> list[Note]:
    duration_s = step_s * 0.8 if duration_s is None else duration_s
    return [Note(start_s + i * step_s, int(p), velocity, duration_s, voice) for i, p in enumerate(pitches)]


def c_major_line(n: int, seed: int, voice=HUMAN) -> list[Note]:
    rng = np.random.default_rng(seed)
    scale = [p for p in range(55, 86) if p % 12 in C_MAJOR_SCALE]
    i, out = len(scale) // 2, []
    for _ in range(n):
        i = int(np.clip(i + rng.choice([-2, -1, 1, 1, 2]), 0, len(scale) - 1))
        out.append(scale[i])
    return line(out, voice=voice)


def chromatic_cluster_line(n: int, seed: int) -> list[Note]:
    """Half-step clusters struck together, all twelve pitch classes, faster and louder."""
    rng = np.random.default_rng(seed)
    notes = []
    for i in range(n):
        low = int(rng.integers(40, 90))
        notes += [Note(i * 0.1, low + k, 110, 0.08) for k in range(3)]
    return notes


def chord(pitches, onset_s, duration_s, voice=HUMAN, velocity=70) -> list[Note]:
    return [Note(onset_s, p, velocity, duration_s, voice) for p in pitches]


# ---------------------------------------------------------------------------------------------
# Style profiles

def test_a_profile_compared_with_itself_overlaps_fully():
    profile = style_profile(c_major_line(200, seed=1))
    result = compare_profiles(profile, profile)
    assert set(result) == set(HISTOGRAMS) | {"mean"}
    for value in result.values():
        assert value == pytest.approx(1.0)
    for name in HISTOGRAMS:
        assert profile.histogram(name).sum() == pytest.approx(1.0)


def test_a_c_major_line_is_closer_to_another_c_major_line_than_to_a_chromatic_one():
    a = style_profile(c_major_line(300, seed=1))
    b = style_profile(c_major_line(300, seed=2))
    chromatic = style_profile(chromatic_cluster_line(100, seed=3))
    same, other = compare_profiles(a, b), compare_profiles(a, chromatic)
    assert same["mean"] > other["mean"] + 0.3
    for name in HISTOGRAMS:
        assert same[name] > other[name], name
    assert same["pitch_class"] > 0.9
    # The chromatic line plays all twelve pitch classes about equally, the C-major one seven.
    assert np.count_nonzero(a.pitch_class) == 7
    assert np.count_nonzero(chromatic.pitch_class) == 12


def test_transposing_shifts_the_pitch_class_histogram_and_the_register():
    notes = c_major_line(200, seed=4)
    up = [Note(n.onset_s, n.pitch + 2, n.velocity, n.duration_s, n.voice) for n in notes]
    p, q = style_profile(notes), style_profile(up)
    assert np.allclose(q.pitch_class, np.roll(p.pitch_class, 2))
    assert np.allclose(q.register[1:], p.register[:-1])  # one 2-semitone bin higher
    result = compare_profiles(p, q)
    assert result["pitch_class"] < 0.9
    # Rhythm, touch and texture do not change with the key.
    for name in ("ioi", "velocity", "polyphony"):
        assert result[name] == pytest.approx(1.0)


def test_polyphony_counts_a_held_chord_under_a_melody():
    held = chord((48, 52, 55), 0.0, 4.0)                 # C major held for 4 s
    melody = line([72, 74, 76, 77], step_s=0.5, start_s=1.0)
    profile = style_profile(held + melody)
    counts = profile.counts["polyphony"]
    assert counts[2] == 1                               # the chord attack: 3 keys
    assert counts[3] == 4                               # each melody note over the chord: 4 keys
    assert counts.sum() == 5                            # one count per distinct onset
    # Detached melody alone: one voice, even with the chord gone.
    alone = style_profile(melody).counts["polyphony"]
    assert alone[0] == 4 and alone.sum() == 4


def test_legato_overlap_and_a_rolled_chord_do_not_fake_voices():
    legato = [Note(i * 0.25, 60 + i, 80, 0.27) for i in range(8)]   # each key released 20 ms late
    assert style_profile(legato).counts["polyphony"][0] == 8
    rolled = [Note(0.0, 48, 80, 1.0), Note(0.01, 52, 80, 1.0), Note(0.02, 55, 80, 1.0)]
    profile = style_profile(rolled)
    assert profile.counts["polyphony"][2] == 1           # one onset of three keys
    assert profile.counts["ioi"].sum() == 0              # one onset: no interval


def test_inter_onset_intervals_land_in_log_spaced_bins():
    slow = style_profile(line(range(60, 72), step_s=1.0)).ioi
    fast = style_profile(line(range(60, 72), step_s=0.1)).ioi
    assert np.argmax(slow) > np.argmax(fast)
    assert slow.max() == pytest.approx(1.0) and fast.max() == pytest.approx(1.0)
    # A 10 s rest lands in the last bin rather than being lost.
    gap = style_profile(line([60], start_s=0.0) + line([62], start_s=10.0)).counts["ioi"]
    assert gap[-1] == 1 and gap.sum() == 1


def test_voice_selection_and_accumulating_performances():
    human = c_major_line(50, seed=5, voice=HUMAN)
    ai = [Note(n.onset_s, n.pitch - 24, n.velocity, n.duration_s, AI) for n in human]
    duet = human + ai + [Pedal(0.0, True), Pedal(5.0, False)]
    assert style_profile(duet, HUMAN).notes == 50
    assert style_profile(duet, AI).notes == 50
    assert style_profile(duet).notes == 100
    assert np.argmax(style_profile(duet, AI).register) < np.argmax(style_profile(duet, HUMAN).register)

    first, second = c_major_line(40, seed=6), chromatic_cluster_line(20, seed=7)
    pooled = profile_of_many([first, second, []])           # the empty one is skipped
    assert pooled.notes == 40 + 60 and pooled.performances == 2
    summed = StyleProfile().add(style_profile(first)).add(style_profile(second))
    for name in HISTOGRAMS:
        assert np.allclose(summed.histogram(name), pooled.histogram(name))
        expected = (style_profile(first).counts[name] + style_profile(second).counts[name])
        assert np.allclose(pooled.histogram(name), expected / expected.sum())
    # Sums counts, does not average histograms: the 60-note performance weighs more.
    pc_first, pc_second = style_profile(first).pitch_class, style_profile(second).pitch_class
    assert not np.allclose(pooled.pitch_class, (pc_first + pc_second) / 2)
    assert pooled.to_dict()["notes"] == 100


def test_empty_inputs_raise_clear_errors_and_are_deterministic():
    with pytest.raises(ValueError, match="no notes"):
        style_profile([])
    with pytest.raises(ValueError, match="no notes of voice 1"):
        style_profile(c_major_line(10, seed=1, voice=HUMAN), AI)
    with pytest.raises(ValueError, match="no notes"):
        profile_of_many([[], [Pedal(0.0, True)]])
    with pytest.raises(ValueError):
        overlap_area([0.5, 0.5], [1.0, 0.0, 0.0])
    one = style_profile([Note(0.0, 60, 80, 0.5)])             # one note: no interval to compare
    result = compare_profiles(one, one)
    assert result["ioi"] is None and result["mean"] == pytest.approx(1.0)
    assert overlap_area([1.0, 0.0], [0.0, 1.0]) == 0.0
    notes = chromatic_cluster_line(30, seed=9)
    assert style_profile(notes).to_dict() == style_profile(list(reversed(notes))).to_dict()


# ---------------------------------------------------------------------------------------------
# Harmonic coherence

C7 = (48, 52, 55, 58)                  # C E G Bb: C7, scale C mixolydian


def comping_c7(bars: int = 4) -> list[Note]:
    return [n for bar in range(bars) for n in chord(C7, bar * 2.0, 1.8)]


def test_coherence_is_one_when_the_ai_plays_chord_tones():
    ai = line([64, 67, 70, 72, 76, 79, 70, 64], step_s=0.5, start_s=0.25, voice=AI)
    assert harmonic_coherence(comping_c7() + ai) == 1.0
    assert coherence_counts(comping_c7() + ai) == (8, 8)


def test_coherence_drops_when_the_ai_plays_outside():
    inside = line([64, 67, 70, 72], step_s=0.5, start_s=0.25, voice=AI)
    outside = line([61, 66, 68, 71], step_s=0.5, start_s=2.25, voice=AI)    # Db F# Ab B over C7
    half = harmonic_coherence(comping_c7() + inside + outside)
    assert half == pytest.approx(0.5)
    assert harmonic_coherence(comping_c7() + outside) == 0.0
    # Scale tones that are not chord tones (D, F, A over C7) still fit.
    assert harmonic_coherence(comping_c7() + line([62, 65, 69], start_s=0.5, voice=AI)) == 1.0


def test_coherence_follows_the_chord_change():
    human = chord((48, 52, 55, 58), 0.0, 1.9) + chord((53, 56, 60, 63), 4.0, 1.9)   # C7, then Fm7
    e_natural = [Note(1.0, 64, 80, 0.3, AI), Note(5.0, 64, 80, 0.3, AI)]              # E: in C7, not in Fm7
    assert coherence_counts(human + e_natural) == (1, 2)


def test_ai_notes_without_human_context_are_not_counted():
    ai_first = line([61, 62, 63], start_s=-1.0, voice=AI)              # before the human plays
    late = [Note(20.0, 61, 80, 0.3, AI)]                                # long after the human stopped
    events = ai_first + comping_c7(1) + [Note(0.5, 64, 80, 0.3, AI)] + late
    assert coherence_counts(events) == (1, 1)
    assert harmonic_coherence(ai_first) is None
    assert harmonic_coherence([]) is None
    assert harmonic_coherence(comping_c7()) is None                     # no AI notes at all
    # Notes struck together with the AI note are not heard yet: only what came before counts.
    assert harmonic_coherence(chord(C7, 0.0, 1.0) + [Note(0.0, 61, 80, 0.3, AI)]) is None
    with pytest.raises(ValueError):
        harmonic_coherence(comping_c7(), window_s=0)


def test_a_single_human_pitch_class_is_the_allowed_set():
    human = [Note(0.0, 60, 80, 1.0), Note(0.5, 72, 80, 1.0)]            # only C: no chord to name
    ai = [Note(1.0, 48, 80, 0.3, AI), Note(1.2, 50, 80, 0.3, AI)]
    assert coherence_counts(human + ai) == (1, 2)


def test_coherence_of_real_splits_a_solo_at_middle_c():
    # Right hand: C7 arpeggios above middle C; left hand: roots and thirds below (inside), then one
    # chromatic slip (outside).
    right = [n for bar in range(4) for n in line([64, 67, 70, 72], step_s=0.5, start_s=bar * 2.0)]
    left = [Note(bar * 2.0 + 1.0, 48 if bar % 2 else 52, 70, 0.9) for bar in range(4)]
    solo = right + left + [Pedal(0.0, True)]
    relabelled = split_real(solo)
    assert {n.voice for n in relabelled if isinstance(n, Note) and n.pitch >= 60} == {HUMAN}
    assert {n.voice for n in relabelled if isinstance(n, Note) and n.pitch < 60} == {AI}
    assert coherence_of_real(solo) == 1.0
    slip = solo + [Note(7.5, 49, 70, 0.3)]                                # Db under C7
    assert coherence_of_real(slip) == pytest.approx(4 / 5)
    assert coherence_of_real(right) is None                                # no left hand
    assert coherence_of_real([]) is None


# ---------------------------------------------------------------------------------------------
# Loss curve

def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("step,train_bits,val_bits,lr,elapsed_s\n" + "".join(r + "\n" for r in rows))
    return path


@pytest.mark.parametrize("rows", [
    [f"{s},{8 - s / 500:.3f},{(f'{8.2 - s / 520:.3f}' if s % 500 == 0 else '')},0.001,{s / 10}"
     for s in range(0, 2001, 50)],
    ["50,7.25,,0.001,3.0"],                                  # one row, no validation
    [f"{s},{6 - s / 1000:.3f},,0.001,{s}" for s in range(0, 400, 100)],   # no validation rows
    ["100,,6.5,0.001,30"],                                   # only a validation value
    [],                                                      # header only
])
def test_loss_curve_png_is_a_valid_800x480_image(tmp_path, rows):
    csv_path = _write_csv(tmp_path / "loss.csv", rows)
    png = tmp_path / "out" / "loss.png"
    loss_curve_png(csv_path, png, title="test run")
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (800, 480)
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels < 128).any()                               # something was drawn
    assert [p.name for p in png.parent.iterdir()] == ["loss.png"]    # no temp file left behind


def test_loss_curve_draws_both_series_in_their_colours(tmp_path):
    from sideman_train.plots import TRAIN_COLOUR, VAL_COLOUR
    rows = [f"{s},{8 - s / 500:.3f},{(f'{8.2 - s / 520:.3f}' if s % 500 == 0 else '')},0.001,{s / 10}"
            for s in range(0, 2001, 50)]
    png = tmp_path / "loss.png"
    loss_curve_png(_write_csv(tmp_path / "loss.csv", rows), png)
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    for colour in (TRAIN_COLOUR, VAL_COLOUR):
        assert (pixels == colour).all(axis=1).sum() > 200
