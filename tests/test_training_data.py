"""The transformer's training data: vectorised codec, corpus cache (sideman-train prepare), duet
windows (relabel, augment, examples, sampler, scoring windows) and conditioning features."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mido
import numpy as np
import pytest

from sideman.midi_files import read_performance
from sideman.model import events as ev
from sideman.model.conditioning import CHORD_WINDOW_S, MODEL_MODES, chord_profiles, pulse_features, tempo_features
from sideman_train import prepare
from sideman_train.corpus import (CorpusError, index_folder, load_cache, parse_midi_bytes, read_events)
from sideman_train.duets import (AUGMENT_DEFAULTS, WindowSampler, augment, make_example, relabel,
                                 scoring_windows)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PIJAMA = SHARED_DATA / "pijama"


# ---------------------------------------------------------------------------------------------
# Fixtures (MIDI written with mido)

def write_midi(path: Path, tracks: list[list[mido.Message]], ticks_per_beat: int = 480) -> Path:
    mf = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        track = mido.MidiTrack()
        track.extend(messages)
        mf.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    mf.save(str(path))
    return path


def tricky_tracks() -> list[list[mido.Message]]:
    """Tempo changes (in a separate conductor track), pedal (repeated values too), overlapping notes
    of one key, chords, a second channel with its own pedal, notes ending at the same tick."""
    conductor = [mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                 mido.MetaMessage("set_tempo", tempo=350_000, time=700),
                 mido.MetaMessage("set_tempo", tempo=800_000, time=1000),
                 mido.MetaMessage("set_tempo", tempo=420_000, time=1500)]
    m = mido.Message
    piano = [
        m("control_change", control=64, value=127, time=0),
        m("note_on", note=48, velocity=70, time=0), m("note_on", note=55, velocity=60, time=0),
        m("note_on", note=64, velocity=90, time=10),
        m("note_on", note=60, velocity=80, time=100),
        m("note_on", note=60, velocity=95, time=150),      # overlaps the open 60
        m("control_change", control=64, value=100, time=0),  # still down: not an event
        m("note_off", note=60, velocity=0, time=200),      # ends the first 60 (first in, first out)
        m("note_on", note=48, velocity=0, time=0), m("note_off", note=55, time=0),
        m("control_change", control=64, value=0, time=30),
        m("note_off", note=60, time=300),
        m("note_off", note=64, time=0),
        m("control_change", control=64, value=90, time=0),
        m("note_on", note=72, velocity=40, time=500), m("note_on", note=76, velocity=45, time=0),
        m("note_off", note=72, time=400), m("note_off", note=76, time=100),
        m("control_change", control=64, value=10, time=20),
        m("note_on", note=38, velocity=100, time=1000), m("note_off", note=38, time=960),
    ]
    other = [
        m("note_on", note=67, velocity=50, time=333, channel=3),
        m("control_change", control=64, value=127, time=1, channel=3),
        m("note_off", note=67, time=1200, channel=3),
        m("control_change", control=64, value=0, time=5, channel=3),
    ]
    return [conductor, piano, other]


def simple_tracks(seed: int, n: int = 40) -> list[list[mido.Message]]:
    rng = np.random.default_rng(seed)
    out = [mido.Message("control_change", control=64, value=127, time=0)]
    for _ in range(n):
        pitch = int(rng.integers(40, 90))
        out.append(mido.Message("note_on", note=pitch, velocity=int(rng.integers(30, 110)), time=int(rng.integers(0, 300))))
        out.append(mido.Message("note_off", note=pitch, time=int(rng.integers(20, 400))))
    out.append(mido.Message("control_change", control=64, value=0, time=10))
    return [out]


def as_arrays(events) -> dict[str, np.ndarray]:
    onset, pitch, dur, vel = [], [], [], []
    for e in events:
        onset.append(e.onset_s)
        if isinstance(e, ev.Pedal):
            pitch.append(ev.PEDAL_DOWN if e.down else ev.PEDAL_UP), dur.append(0.0), vel.append(0)
        else:
            pitch.append(e.pitch), dur.append(e.duration_s), vel.append(e.velocity)
    return {"onset_s": np.array(onset), "pitch": np.array(pitch), "duration_s": np.array(dur),
            "velocity": np.array(vel)}


def run_prepare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sideman-train")
    prepare.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prepare", *argv])
    return args.run(args)


# ---------------------------------------------------------------------------------------------
# Vectorised codec

def _boundaries(bins) -> np.ndarray:
    values = list(bins)
    for low, high in zip(bins[:-1], bins[1:]):
        middle = high / 2 if low <= 0 else float(np.sqrt(low * high))
        values.extend(np.nextafter(middle, [-np.inf, np.inf]).tolist() + [middle])
    values = np.array(values)
    return np.concatenate([values, np.nextafter(values, np.inf), np.nextafter(values, -np.inf)])


def test_vectorised_codec_equals_scalar():
    rng = np.random.default_rng(1)
    times = np.concatenate([rng.uniform(-1, 6, 20_000), np.exp(rng.uniform(-8, 2, 20_000)),
                            _boundaries(ev.TIME_BINS_S), [0.0, -0.0, -3.0, 1e9, np.inf, np.nan]])
    assert ev.time_bins(times).dtype == np.int64
    assert ev.time_bins(times).tolist() == [ev.time_bin(float(t)) for t in times]
    durations = np.concatenate([rng.uniform(-1, 10, 20_000), np.exp(rng.uniform(-8, 3, 20_000)),
                                _boundaries(ev.DURATION_BINS_S), [0.0, 1e9, np.inf, np.nan]])
    assert ev.duration_bins(durations).tolist() == [ev.duration_bin(float(d)) for d in durations]
    assert ev.duration_bins(durations.astype(np.float32)).tolist() == [
        ev.duration_bin(float(d)) for d in durations.astype(np.float32)]
    velocities = np.arange(-10, 300)
    assert ev.velocity_bins(velocities).tolist() == [ev.velocity_bin(int(v)) for v in velocities]
    assert ev.velocity_bins(velocities.astype(np.uint8)[10:138]).tolist() == [ev.velocity_bin(v) for v in range(128)]
    floats = rng.uniform(-5, 140, 1000)
    assert ev.velocity_bins(floats).tolist() == [ev.velocity_bin(v) for v in floats]
    assert ev.time_bins(np.zeros((2, 3))).shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# Parsing

def test_symusic_parse_equals_read_performance(tmp_path):
    path = write_midi(tmp_path / "tricky.mid", tricky_tracks())
    ours = read_events(path)
    theirs = as_arrays(read_performance(path))
    assert ours["pitch"].tolist() == theirs["pitch"].tolist()
    np.testing.assert_allclose(ours["onset_s"], theirs["onset_s"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours["duration_s"], theirs["duration_s"], atol=1e-4, rtol=0)
    assert ours["velocity"].tolist() == theirs["velocity"].tolist()
    # the fixture has what it claims: overlapping 60s, pedal on two channels, a tempo change
    assert (ours["pitch"] == 60).sum() == 2 and (ours["pitch"] == ev.PEDAL_DOWN).sum() == 3
    assert ours["onset_s"][-1] > 3.0
    assert ours["bpm"].dtype == np.float32 and ours["bpm"].shape == ours["pitch"].shape
    assert np.all(ours["bpm"] > 0)
    assert np.all((ours["beat_phase"] >= 0) & (ours["beat_phase"] < 1))
    assert np.all((ours["beat_confidence"] >= 0) & (ours["beat_confidence"] <= 1))
    dtypes = {k: v.dtype for k, v in ours.items()}
    assert dtypes == {"onset_s": np.float64, "pitch": np.int16, "duration_s": np.float32,
                      "velocity": np.uint8, "bpm": np.float32, "beat_phase": np.float32,
                      "beat_confidence": np.float32}


@pytest.mark.corpus
def test_symusic_parse_equals_read_performance_on_pijama():
    if not PIJAMA.is_dir():
        pytest.skip("no ../shared/data/pijama")
    import csv
    with open(PIJAMA / "pijama.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows[::250]:
        path = PIJAMA / row["midi_path"]
        ours = parse_midi_bytes(path.read_bytes())
        theirs = as_arrays(read_performance(path))
        assert ours["pitch"].tolist() == theirs["pitch"].tolist(), path
        np.testing.assert_allclose(ours["onset_s"], theirs["onset_s"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(ours["duration_s"], theirs["duration_s"], atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# prepare and the cache

def make_folder(root: Path) -> Path:
    corpus = root / "corpus"
    write_midi(corpus / "Pianist A" / "Le Mémoire et la Mer - Live.midi", tricky_tracks())
    write_midi(corpus / "Pianist A" / "Don't Blame Me.mid", simple_tracks(1))
    write_midi(corpus / "Pianist B" / "sub" / "blues.MID", simple_tracks(2, 300))
    for k in range(12):  # enough files for both splits
        write_midi(corpus / "Pianist B" / f"take {k}.mid", simple_tracks(10 + k))
    (corpus / "Pianist B" / "copy of blues.mid").write_bytes((corpus / "Pianist B" / "sub" / "blues.MID").read_bytes())
    (corpus / "broken.mid").write_bytes(np.random.default_rng(0).bytes(300))
    (corpus / "empty.midi").write_bytes(b"")
    write_midi(corpus / "no notes.mid", [[mido.MetaMessage("set_tempo", tempo=400_000, time=0)]])
    (corpus / "readme.txt").write_text("not midi")
    return corpus


def test_prepare_folder_writes_cache_and_skips_bad_files(tmp_path, capsys):
    corpus = make_folder(tmp_path)
    out = tmp_path / "cache"
    assert run_prepare(["--folder", str(corpus), "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "skipped (unreadable): broken.mid" in text
    assert "skipped (empty): empty.midi" in text
    assert "skipped (empty): no notes.mid" in text
    # the later of two identical performances (in path order) is the one skipped
    assert "skipped (duplicate): Pianist B/sub/blues.MID: same performance as Pianist B/copy of blues.mid" in text
    assert "19 files, 15 kept, 4 skipped (1 duplicate, 2 empty, 1 unreadable)" in text

    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert index["format"] == "sideman-corpus" and index["version"] == 2
    assert not list(out.glob(".*tmp*"))
    paths = {r["path"] for r in index["performances"]}
    assert "Pianist A/Le Mémoire et la Mer - Live.midi" in paths and "Pianist A/Don't Blame Me.mid" in paths
    splits = {r["split"] for r in index["performances"]}
    assert splits == {"train", "val"} or splits == {"train"}
    total = 0
    for split in splits:
        data = load_cache(out, split)
        total += len(data)
        assert data.offsets[0] == 0 and data.offsets[-1] == data.pitch.size
        for i, record in enumerate(data.performances):
            assert record["split"] == split and record["n_events"] == data.n_events[i]
            assert {"id", "artist", "title", "path", "duration_s", "sha1"} <= set(record)
            perf = data.performance(i)
            direct = read_events(corpus / record["path"])
            for name in ("onset_s", "pitch", "duration_s", "velocity", "bpm", "beat_phase", "beat_confidence"):
                assert perf[name].dtype == direct[name].dtype
                np.testing.assert_array_equal(perf[name], direct[name])
    assert total == 15
    artists = {r["path"]: r["artist"] for r in index["performances"]}
    assert artists["Pianist A/Don't Blame Me.mid"] == "Pianist A"

    # one process gives the same cache; --artist names every file
    out1 = tmp_path / "cache1"
    assert run_prepare(["--folder", str(corpus), "--pianist", "Somebody", "--out", str(out1),
                        "--jobs", "1", "--quiet"]) == 0
    index1 = json.loads((out1 / "index.json").read_text(encoding="utf-8"))
    assert [r["path"] for r in index1["performances"]] == [r["path"] for r in index["performances"]]
    assert {r["artist"] for r in index1["performances"]} == {"Somebody"}


def test_prepare_reports_bad_source(tmp_path, capsys):
    assert run_prepare(["--folder", str(tmp_path / "nope"), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert run_prepare(["--pijama", str(tmp_path), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "pijama.csv" in capsys.readouterr().err
    with pytest.raises(CorpusError):
        load_cache(tmp_path / "c", "train")


def test_prepare_pijama_csv_layout(tmp_path):
    root = tmp_path / "pj"
    write_midi(root / "midi" / "studio" / "X Y" / "Album" / "It's Él.midi", simple_tracks(3))
    write_midi(root / "midi" / "live" / "Z" / "A" / "two.midi", simple_tracks(4))
    (root / "pijama.csv").write_text(
        "id,artist,album,title,recording_condition,midi_path,duration_sec,split\n"
        "0,X Y,Album,It's Él,studio,midi/studio/X Y/Album/It's Él.midi,10,train\n"
        "1,Z,A,two,live,midi/live/Z/A/two.midi,10,val\n"
        "2,Z,A,gone,live,midi/live/Z/A/gone.midi,10,val\n", encoding="utf-8")
    out = tmp_path / "cache"
    assert run_prepare(["--pijama", str(root), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    train, val = load_cache(out, "train"), load_cache(out, "val")
    assert [r["title"] for r in train.performances] == ["It's Él"] and train.performances[0]["id"] == "0"
    assert [r["artist"] for r in val.performances] == ["Z"]


def test_folder_split_is_by_file_and_deterministic(tmp_path):
    corpus = tmp_path / "c"
    for k in range(60):
        write_midi(corpus / "P" / f"{k}.mid", simple_tracks(k, 3))
    a, b = index_folder(corpus), index_folder(corpus)
    assert [r["split"] for r in a] == [r["split"] for r in b]
    assert 0 < sum(r["split"] == "val" for r in a) < 20


# ---------------------------------------------------------------------------------------------
# Conditioning

def test_chord_profiles_causal_and_human_only():
    rng = np.random.default_rng(3)
    n = 300
    onset = np.sort(rng.uniform(0, 30, n))
    onset[50:55] = onset[50]  # a chord: simultaneous events
    pitch = rng.integers(21, 109, n)
    pitch[rng.random(n) < 0.1] = ev.PEDAL_DOWN
    voice = rng.integers(0, 2, n)
    got = chord_profiles(onset, pitch, voice)
    assert got.dtype == np.float32 and got.shape == (n, 12)
    for i in range(n):
        counts = np.zeros(12)
        # the window ends at the previous event's onset: event i's own time is what is predicted
        reference = onset[max(i - 1, 0)]
        for j in range(i):
            if pitch[j] < 128 and voice[j] == ev.HUMAN and onset[j] >= reference - CHORD_WINDOW_S:
                counts[pitch[j] % 12] += 1
        want = counts / counts.max() if counts.max() > 0 else counts
        np.testing.assert_allclose(got[i], want, atol=1e-6)
    # changing an event (or anything after it) never changes its own profile
    changed = pitch.copy()
    changed[100:] = (changed[100:] + 1).clip(max=127)
    np.testing.assert_array_equal(chord_profiles(onset, changed, voice)[:101], got[:101])
    # AI notes are never heard
    assert not chord_profiles(onset, pitch, np.ones(n)).any()
    # out of time order: the same rule
    shuffled = np.array(onset)
    shuffled[10], shuffled[11] = shuffled[11] + 0.5, shuffled[10]
    slow = chord_profiles(shuffled, pitch, voice)
    assert slow.shape == (n, 12)
    np.testing.assert_array_equal(slow[:10], chord_profiles(onset, pitch, voice)[:10])
    # moving event i in time (not its pitch) does not change its own profile
    later = np.array(onset)
    later[200] = (later[200] + later[201]) / 2
    np.testing.assert_array_equal(chord_profiles(later, pitch, voice)[200], got[200])


def test_tempo_features():
    got = tempo_features(np.array([120, 60, 240, 10, 2000, 0, -5, np.nan], dtype=np.float32))
    np.testing.assert_allclose(got, [0, -1, 1, -2, 2, 0, 0, 0], atol=1e-6)
    assert got.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# Duets

def phrase_window():
    """Three phrases separated by 0.5 s gaps, a pedal in the middle, low and high notes."""
    onset = np.array([0.0, 0.1, 0.2, 0.3, 0.8, 0.9, 1.0, 1.0, 1.6, 1.7])
    pitch = np.array([40, 72, 45, 76, 41, 70, ev.PEDAL_DOWN, 50, 80, 43])
    return onset, pitch


def test_relabel_modes():
    onset, pitch = phrase_window()
    rng = np.random.default_rng(0)
    assert relabel(onset, pitch, "solo", rng).tolist() == [ev.AI] * 10
    starts = set()
    for seed in range(20):
        voice = relabel(onset, pitch, "answer", np.random.default_rng(seed))
        assert voice.dtype == np.uint8
        first = int(voice[0])
        starts.add(first)
        assert voice.tolist() == [first] * 4 + [1 - first] * 4 + [first] * 2
    assert starts == {ev.HUMAN, ev.AI}
    # a phrase without gaps still ends after 8 s
    long_onset = np.arange(0, 20, 0.25)
    long_voice = relabel(long_onset, np.full(long_onset.size, 60), "answer", None)
    assert long_voice[0] == ev.HUMAN and long_voice[long_onset < 8].tolist() == [ev.HUMAN] * 32
    assert long_voice[(long_onset >= 8) & (long_onset < 16)].tolist() == [ev.AI] * 32
    assert long_voice[long_onset >= 16].tolist() == [ev.HUMAN] * 16
    # comp: the split is drawn in 55..65: low notes AI, high notes and pedal human
    comp = relabel(onset, pitch, "comp", rng)
    assert comp.tolist() == [1, 0, 1, 0, 1, 0, 0, 1, 0, 1]
    duet = relabel(onset, pitch, MODEL_MODES.index("duet"), rng)
    assert duet.tolist() == [0, 1, 0, 1, 0, 1, 0, 0, 1, 0]


def test_relabel_is_causal_later_notes_never_change_earlier_voices():
    onset, pitch = phrase_window()
    for mode in ("answer", "comp", "duet"):
        later = pitch.copy()
        later[6:] = np.where(later[6:] < 128, later[6:] + 30, later[6:])   # move the end of the window up
        a = relabel(onset, pitch, mode, np.random.default_rng(5))
        b = relabel(onset, later, mode, np.random.default_rng(5))
        assert a[:6].tolist() == b[:6].tolist(), mode


def window_of(onset, pitch, prev=None):
    n = onset.size
    is_note = pitch < 128
    return {"onset_s": onset, "pitch": pitch.astype(np.int16),
            "duration_s": np.where(is_note, 0.3, 0).astype(np.float32),
            "velocity": np.where(is_note, 64, 0).astype(np.uint8),
            "bpm": np.full(n, 100, np.float32), "prev_onset_s": prev}


def test_augment_keeps_range_and_pedal():
    rng = np.random.default_rng(5)
    onset = np.arange(20) * 0.2 + 5
    pitch = np.array([21, 22, 129, 60, 108, 107, 128, 30] + [64] * 12)
    window = window_of(onset, pitch, prev=4.9)
    shifts = set()
    for _ in range(200):
        out = augment(window, rng, **AUGMENT_DEFAULTS)
        notes = out["pitch"] < 128
        assert out["pitch"][notes].min() >= 21 and out["pitch"][notes].max() <= 108
        assert out["pitch"][~notes].tolist() == [129, 128]
        assert (out["velocity"][~notes] == 0).all() and out["velocity"][notes].min() >= 1
        s = out["onset_s"][0] / 5
        assert 0.9 <= s < 1.1
        np.testing.assert_allclose(out["duration_s"][notes], 0.3 * s, rtol=1e-5)
        np.testing.assert_allclose(out["bpm"], 100 / s, rtol=1e-5)
        np.testing.assert_allclose(out["prev_onset_s"], 4.9 * s)
        shifts.add(int(out["pitch"][0]) - 21)
    assert shifts == {0}  # 21 and 108 both present: no room
    window["pitch"] = np.where(pitch < 128, 60, pitch).astype(np.int16)
    shifts = {int(augment(window, rng, stretch=None, velocity_jitter=None)["pitch"][0]) - 60 for _ in range(300)}
    assert shifts == set(range(-5, 7))
    same = augment(window, rng, transpose=None, stretch=None, velocity_jitter=None)
    for key in ("onset_s", "pitch", "duration_s", "velocity", "bpm"):
        np.testing.assert_array_equal(same[key], window[key])


def test_make_example():
    onset, pitch = phrase_window()
    ex = make_example(window_of(onset + 3, pitch, prev=2.9), "answer", np.random.default_rng(1))
    assert set(ex) == {"time", "pitch", "duration", "velocity", "voice", "chord", "pulse", "loss_mask",
                       "human_mask", "mode"}
    assert ex["time"].tolist() == ev.time_bins(np.diff(onset, prepend=onset[0] - 0.1)).tolist()
    assert ex["time"][0] == ev.time_bin(0.1)
    assert make_example(window_of(onset, pitch), 0)["time"][0] == 0   # a performance's first event
    pedal = pitch >= 128
    assert (ex["duration"][pedal] == 0).all() and (ex["velocity"][pedal] == 0).all()
    assert ex["duration"][~pedal].tolist() == [ev.duration_bin(0.3)] * 9
    assert ex["velocity"][~pedal].tolist() == [ev.velocity_bin(64)] * 9
    assert ex["loss_mask"].tolist() == (ex["voice"] == ev.AI).tolist()
    assert ex["human_mask"].tolist() == (ex["voice"] == ev.HUMAN).tolist()
    assert ex["mode"] == MODEL_MODES.index("answer") and ex["mode"].dtype == np.int64
    assert ex["chord"].shape == (10, 12) and ex["pulse"].shape == (10, 4)
    for key in ("time", "pitch", "duration", "velocity", "voice"):
        assert ex[key].dtype == np.int64
    np.testing.assert_array_equal(ex["chord"], chord_profiles(onset + 3, pitch, ex["voice"]))
    # the pulse of event i: the tracker's estimate after event i - 1 (the window's prev_ values for the first)
    w = window_of(onset, pitch, prev=-0.5)
    w["bpm"] = np.linspace(60, 240, 10).astype(np.float32)
    w["beat_phase"] = np.linspace(0, 0.9, 10).astype(np.float32)
    w["beat_confidence"] = np.full(10, 0.5, np.float32)
    w.update(prev_bpm=30.0, prev_beat_phase=0.25, prev_beat_confidence=1.0)
    pulse = make_example(w, 0)["pulse"]
    np.testing.assert_allclose(pulse[:, 0], tempo_features(np.r_[30.0, w["bpm"][:-1]]))
    np.testing.assert_allclose(pulse, pulse_features(np.r_[30.0, w["bpm"][:-1]], np.r_[0.25, w["beat_phase"][:-1]],
                                                     np.r_[1.0, w["beat_confidence"][:-1]]), atol=1e-6)
    np.testing.assert_allclose(pulse[0], [tempo_features(np.array([30.0]))[0], 1.0, 0.0, 1.0], atol=1e-6)
    for key in ("prev_bpm", "prev_beat_phase", "prev_beat_confidence"):
        w.pop(key)
    assert (make_example(w, 0)["pulse"][0] == 0).all()   # a performance's start: no tempo, no grid
    # a listening window: every event the human's, in answer mode, nothing for the AI to score
    heard = make_example(window_of(onset, pitch), "comp", np.random.default_rng(1), listening=True)
    assert (heard["voice"] == ev.HUMAN).all() and heard["human_mask"].all() and not heard["loss_mask"].any()
    assert heard["mode"] == MODEL_MODES.index("answer")


def synthetic_split(tmp_path, n_perf: int = 6):
    corpus = tmp_path / "syn"
    for k in range(n_perf):
        write_midi(corpus / "P" / f"p{k}.mid", simple_tracks(k, 100 + 60 * k))
    out = tmp_path / "cache"
    assert run_prepare(["--folder", str(corpus), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    splits = [load_cache(out, s) for s in ("train", "val") if (out / f"{s}.npz").exists()]
    return max(splits, key=len)


def test_window_sampler(tmp_path):
    split = synthetic_split(tmp_path)
    length = 150
    n = split.n_events
    styles = np.arange(len(split))
    sampler = WindowSampler(split, styles, length, np.random.default_rng(0), augment_cfg=AUGMENT_DEFAULTS)
    batch = sampler.batch(64)
    assert batch["time"].shape == (64, length) and batch["chord"].shape == (64, length, 12)
    assert batch["style"].dtype == np.int64 and batch["mode"].shape == (64,)
    assert set(batch["style"].tolist()) <= set(styles[n >= length].tolist())
    assert set(batch["mode"].tolist()) == set(range(len(MODEL_MODES)))
    solo = batch["mode"] == 0
    assert batch["loss_mask"][solo].all()
    # only one mode, one performance weighted
    weight = np.zeros(len(split))
    weight[int(np.argmax(n))] = 1
    only = WindowSampler(split, styles, length, np.random.default_rng(1), perf_weight=weight,
                         mode_probs=[0, 0, 1, 0]).batch(8)
    assert (only["style"] == int(np.argmax(n))).all() and (only["mode"] == 2).all()
    with pytest.raises(ValueError):
        WindowSampler(split, styles, int(n.max()) + 1, np.random.default_rng(0))


@pytest.mark.parametrize("n,length,stride", [(1000, 256, 128), (256, 256, 64), (10, 256, 128),
                                             (257, 256, 256), (1, 4, 1), (999, 100, 7), (0, 8, 4)])
def test_scoring_windows_cover_each_event_once(n, length, stride):
    windows = scoring_windows(n, length, stride)
    scored = []
    for start, score_from in windows:
        end = min(start + length, n)
        assert 0 <= start <= score_from < end
        assert score_from == 0 or score_from - start >= length - stride
        scored.extend(range(score_from, end))
    assert scored == list(range(n))
    with pytest.raises(ValueError):
        scoring_windows(10, 8, 9)
