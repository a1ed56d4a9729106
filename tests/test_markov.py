"""The Markov voice: scoring, sampling and steering, live learning, tables on disk, the training
commands, and (with the corpus beside the repository) the shipped tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

from sideman.model.events import PEDAL_DOWN, PEDAL_UP
from sideman.model.markov import (DEFAULT_STYLE, MarkovBlend, MarkovError, MarkovModel, available_styles,
                                  load_style)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
from sideman_train.markov_fit import fit_markov, save_markov  # noqa: E402
PIJAMA = ROOT.parent / "shared" / "data" / "pijama"

C_MAJOR = (0, 4, 7)


def wandering_lines(seed: int, sequences: int = 12, length: int = 300) -> list[list[tuple]]:
    """A made-up corpus: random-walk lines with some chords and pedalling, in many registers."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(sequences):
        pitch, seq = int(rng.integers(45, 80)), []
        for i in range(length):
            if i % 16 == 0:
                seq.append((int(rng.integers(3, 12)), PEDAL_DOWN if i % 32 == 0 else PEDAL_UP, 0, 0))
            pitch = int(np.clip(pitch + rng.choice([-5, -3, -2, -1, 1, 2, 3, 4, 7]), 30, 96))
            chord = rng.random() < 0.2
            seq.append((0 if chord else int(rng.integers(5, 16)), pitch, int(rng.integers(4, 14)),
                        int(rng.integers(6, 11))))
        out.append(seq)
    return out


def repeated(pattern: list[int], times: int) -> list[tuple]:
    """A pitch pattern repeated, with constant rhythm, duration and velocity (only pitch matters)."""
    return [(8, pitch, 8, 9) for _ in range(times) for pitch in pattern]


@pytest.fixture(scope="module")
def corpus_model() -> MarkovModel:
    return fit_markov(wandering_lines(seed=1), name="wander")


# ---------------------------------------------------------------------------------------------
# Scoring

def test_a_learned_pattern_costs_far_fewer_bits_than_random_events():
    motif = [60, 64, 67, 72, 71, 67, 62, 65]
    model = fit_markov([repeated(motif, 60)], name="motif")
    rng = np.random.default_rng(0)
    noise = [(int(rng.integers(0, 27)), int(rng.integers(21, 109)), int(rng.integers(0, 23)),
              int(rng.integers(0, 16))) for _ in range(200)]
    pattern_bits = model.bits_per_event(repeated(motif, 10))
    assert pattern_bits < 1.0
    assert model.bits_per_event(noise) > 10 * pattern_bits


def test_a_longer_context_resolves_what_one_note_cannot():
    # After C D E comes F or G: which one depends on what came before the C D E.
    pattern = [60, 62, 64, 65, 60, 62, 64, 67]
    one = fit_markov([repeated(pattern, 100)], name="one", max_order=1)
    four = fit_markov([repeated(pattern, 100)], name="four", max_order=4)
    test = repeated(pattern, 20)
    assert four.bits_per_event(test) < 0.5 * one.bits_per_event(test)


def test_bits_are_per_event_and_pedal_fields_cost_nothing(corpus_model):
    seq = wandering_lines(seed=5, sequences=1, length=80)[0]
    bits = corpus_model.log2_probs(seq)
    assert bits.shape == (len(seq),) and np.all(bits > 0) and np.all(np.isfinite(bits))
    assert corpus_model.bits_per_event(seq) == pytest.approx(bits.mean())
    fields = corpus_model.field_probabilities(seq)
    pedal = np.array([e[1] >= 128 for e in seq])
    assert np.all(fields["duration"][pedal] == 1.0) and np.all(fields["velocity"][pedal] == 1.0)
    # A trained model beats the unigram baseline stored beside it on unseen events of the same kind.
    assert bits.mean() < corpus_model.unigram_log2_probs(seq).mean()


def test_sampling_and_scoring_agree_on_every_factor(corpus_model):
    """The sampler's distributions are the ones scoring uses (same contexts, same smoothing)."""
    seq = wandering_lines(seed=6, sequences=1, length=60)[0]
    corpus_model.learn(seq[10:40])
    try:
        bits = corpus_model.log2_probs(seq)
        for i in range(0, len(seq), 3):
            cursor, event = corpus_model._cursor(seq[:i]), seq[i]
            p = cursor.distribution("time", event)[event[0]] * cursor.distribution("pitch", event)[event[1]]
            if event[1] < 128:
                p *= cursor.distribution("duration", event)[event[2]] * cursor.distribution("velocity", event)[event[3]]
            assert -np.log2(p) == pytest.approx(bits[i], abs=1e-9)
    finally:
        corpus_model.clear_live()


def test_distributions_sum_to_one(corpus_model):
    cursor = corpus_model._cursor(wandering_lines(seed=7, sequences=1, length=20)[0])
    for field in ("time", "pitch", "duration", "velocity"):
        assert cursor.distribution(field, (3, 64, 5, 8)).sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Sampling and steering

def _answer(model, rng, n=200, **steer):
    history = list(wandering_lines(seed=3, sequences=1, length=30)[0])
    for _ in range(n):
        history.append(model.sample(history, rng, **steer))
    return history[-n:]


def test_sampling_is_deterministic_for_a_seed(corpus_model):
    a = _answer(corpus_model, np.random.default_rng(42), n=60)
    b = _answer(corpus_model, np.random.default_rng(42), n=60)
    c = _answer(corpus_model, np.random.default_rng(43), n=60)
    assert a == b and a != c
    history = wandering_lines(seed=3, sequences=1, length=30)[0]
    as_array = corpus_model.sample(np.array(history), np.random.default_rng(42))
    assert as_array == corpus_model.sample(history, np.random.default_rng(42))
    assert all(len(e) == 4 and all(isinstance(v, int) for v in e) for e in a)
    assert all(e[2:] == (0, 0) for e in a if e[1] >= 128)


def test_register_limits_are_never_crossed(corpus_model):
    weights = np.zeros(130)
    weights[60:73] = 1.0
    answer = _answer(corpus_model, np.random.default_rng(1), pitch_weights=weights)
    assert all(60 <= e[1] <= 72 for e in answer)


def test_chord_tone_bias_raises_the_share_of_chord_tones(corpus_model):
    def share(events):
        notes = [e[1] for e in events if e[1] < 128]
        return sum(p % 12 in C_MAJOR for p in notes) / len(notes)

    bent = np.ones(130)
    bent[[p for p in range(128) if p % 12 in C_MAJOR]] = 6.0
    plain = share(_answer(corpus_model, np.random.default_rng(2)))
    biased = share(_answer(corpus_model, np.random.default_rng(2), pitch_weights=bent))
    assert biased > plain + 0.2


def test_impossible_weights_fall_back_instead_of_crashing(corpus_model):
    rng = np.random.default_rng(3)
    history = wandering_lines(seed=3, sequences=1, length=30)[0]
    event = corpus_model.sample(history, rng, pitch_weights=np.zeros(130), time_weights=np.zeros(27))
    assert 0 <= event[1] < 130
    # Only pedal allowed by the weights, but the pedal is forbidden: a note still comes out.
    only_pedal = np.zeros(130)
    only_pedal[PEDAL_DOWN:] = 1.0
    for _ in range(20):
        assert corpus_model.sample(history, rng, pitch_weights=only_pedal, allow_pedal=False)[1] < 128
    # A near-greedy temperature with weights on unlikely pitches still samples among them.
    far = np.zeros(130)
    far[[21, 22]] = 1.0
    assert corpus_model.sample(history, rng, temperature=0.01, pitch_weights=far)[1] in (21, 22)
    assert corpus_model.sample(history, rng, pitch_weights=np.full(130, np.nan))[1] < 130


def test_no_pedal_when_pedal_is_not_allowed(corpus_model):
    answer = _answer(corpus_model, np.random.default_rng(4), allow_pedal=False)
    assert all(e[1] < 128 for e in answer)


def test_time_weights_steer_density(corpus_model):
    dense_w = np.exp(-np.arange(27) / 2.0)
    sparse_w = np.exp(np.arange(27) / 4.0)
    dense = _answer(corpus_model, np.random.default_rng(5), time_weights=dense_w)
    sparse = _answer(corpus_model, np.random.default_rng(5), time_weights=sparse_w)
    assert np.mean([e[0] for e in dense]) < np.mean([e[0] for e in sparse]) - 3


# ---------------------------------------------------------------------------------------------
# Live learning

def test_learning_a_phrase_makes_it_likelier_and_clearing_forgets_it(corpus_model):
    phrase = [(7, p, 6, 9) for p in (61, 68, 73, 66, 75, 70, 63, 58, 65, 72)] * 2
    before = corpus_model.bits_per_event(phrase)
    corpus_model.learn(phrase)
    learned = corpus_model.bits_per_event(phrase)
    corpus_model.learn(phrase, weight=3.0)
    stronger = corpus_model.bits_per_event(phrase)
    corpus_model.clear_live()
    assert learned < before - 1.0
    assert stronger < learned
    assert corpus_model.bits_per_event(phrase) == pytest.approx(before, abs=1e-12)


def test_an_empty_model_plays_back_what_it_learns_live():
    """The fallback when a table is missing: no corpus, only the player."""
    model = MarkovModel.empty(name="live-only")
    phrase = [(7, p, 6, 9) for p in (60, 62, 64, 65, 67)] * 3
    rng = np.random.default_rng(0)
    assert 0 <= model.sample([], rng)[1] < 130
    model.learn(phrase)
    history = list(phrase[:3])
    for _ in range(10):
        history.append(model.sample(history, rng, temperature=0.5))
    assert [e[1] for e in history[3:8]] == [65, 67, 60, 62, 64]


def test_the_empty_model_is_what_counting_no_performances_gives():
    """The box's fallback (MarkovModel.empty) and sideman-train's fit of no corpus are one model."""
    phrase = [(7, p, 6, 9) for p in (60, 62, 64, 65, 67)] * 3
    empty, counted = MarkovModel.empty(name="empty"), fit_markov([], name="counted")
    empty.learn(phrase)
    counted.learn(phrase)
    seq = wandering_lines(seed=4, sequences=1, length=60)[0]
    assert np.array_equal(empty.log2_probs(seq), counted.log2_probs(seq))


def test_the_live_layer_forgets_its_oldest_phrases(corpus_model, monkeypatch):
    import sideman.model.markov as markov

    monkeypatch.setattr(markov, "LIVE_MEMORY_EVENTS", 50)
    first = [(7, p, 6, 9) for p in (61, 68, 73, 66, 75, 70, 63, 58, 65, 72)] * 3
    second = [(5, p, 4, 7) for p in (50, 57, 52, 59, 54, 61)] * 5
    plain_second = corpus_model.bits_per_event(second)
    try:
        corpus_model.learn(second)
        only_second = corpus_model.log2_probs(first)
        corpus_model.clear_live()
        corpus_model.learn(first)
        corpus_model.learn(second)   # 60 events > 50: the first phrase is taken back out
        assert np.allclose(corpus_model.log2_probs(first), only_second, atol=1e-9)
        assert corpus_model.bits_per_event(second) < plain_second - 1.0
    finally:
        corpus_model.clear_live()


# ---------------------------------------------------------------------------------------------
# Tables on disk

def test_save_and_load_give_identical_bits(corpus_model, tmp_path):
    path = tmp_path / "wander.npz"
    save_markov(corpus_model, path)
    loaded = MarkovModel.load(path)
    seq = wandering_lines(seed=8, sequences=1, length=100)[0]
    assert loaded.name == "wander"
    assert np.array_equal(loaded.log2_probs(seq), corpus_model.log2_probs(seq))
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert [loaded.sample(seq, rng_a) for _ in range(5)] == [corpus_model.sample(seq, rng_b) for _ in range(5)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_missing_corrupt_and_foreign_tables_raise_markov_error(corpus_model, tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(MarkovError, match="nope.npz.*not found"):
        MarkovModel.load(missing)

    good = tmp_path / "good.npz"
    save_markov(corpus_model, good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MarkovError, match="truncated.npz"):
        MarkovModel.load(truncated)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a table" * 10)
    with pytest.raises(MarkovError, match="garbage.npz"):
        MarkovModel.load(garbage)

    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    future = tmp_path / "future.npz"
    np.savez(future, **arrays)
    with pytest.raises(MarkovError, match="future.npz.*version 99"):
        MarkovModel.load(future)

    header["version"] = 1
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    arrays["pitch/2/symbols"] = arrays["pitch/2/symbols"][:-3]
    broken = tmp_path / "broken.npz"
    np.savez(broken, **arrays)
    with pytest.raises(MarkovError, match="broken.npz.*corrupt"):
        MarkovModel.load(broken)


def test_styles_are_found_in_the_models_folder(corpus_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SIDEMAN_MODELS_DIR", str(tmp_path))
    assert available_styles() == []
    save_markov(corpus_model, tmp_path / "markov" / "wander.npz")
    assert available_styles() == ["wander"]
    assert load_style("wander").name == "wander"
    with pytest.raises(MarkovError, match="nobody.npz"):
        load_style("nobody")


# ---------------------------------------------------------------------------------------------
# Blends

def test_a_blend_with_weights_one_and_zero_is_the_single_model(corpus_model):
    other = fit_markov(wandering_lines(seed=2, sequences=4), name="other")
    seq = wandering_lines(seed=9, sequences=1, length=100)[0]
    blend = MarkovBlend([(corpus_model, 1.0), (other, 0.0)])
    assert np.allclose(blend.log2_probs(seq), corpus_model.log2_probs(seq))
    assert blend.bits_per_event(seq) == pytest.approx(corpus_model.bits_per_event(seq))
    assert blend.sample(seq, np.random.default_rng(1)) == corpus_model.sample(seq, np.random.default_rng(1))


def test_a_half_and_half_blend_sits_between_its_styles(corpus_model):
    other = fit_markov([repeated([50, 53, 57, 60], 200)], name="other")
    seq = repeated([50, 53, 57, 60], 10)
    blend = MarkovBlend([(corpus_model, 1.0), (other, 1.0)])
    assert other.bits_per_event(seq) < blend.bits_per_event(seq) < corpus_model.bits_per_event(seq)
    blend.learn(seq)
    assert corpus_model._live_events and other._live_events
    blend.clear_live()
    assert not corpus_model._live_events
    with pytest.raises(ValueError):
        MarkovBlend([(corpus_model, 0.0)])


# ---------------------------------------------------------------------------------------------
# The training commands, on a folder of made-up MIDI files

def _write_midi(path: Path, seq: list[tuple], seed: int) -> None:
    rng = np.random.default_rng(seed)
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    now, messages = 0, []
    for tb, pitch, _db, _vb in seq:
        now += int(tb) * 20
        if pitch >= 128:
            messages.append((now, mido.Message("control_change", control=64, value=127 if pitch == 128 else 0)))
        else:
            messages.append((now, mido.Message("note_on", note=pitch, velocity=int(rng.integers(40, 100)))))
            messages.append((now + int(rng.integers(60, 400)), mido.Message("note_off", note=pitch)))
    messages.sort(key=lambda m: m[0])
    last = 0
    for at, msg in messages:
        track.append(msg.copy(time=at - last))
        last = at
    midi.save(str(path))


def test_train_and_score_commands_on_a_folder(tmp_path, capsys):
    from sideman_train.cli import main

    data = tmp_path / "my takes"
    (data / "sub dir").mkdir(parents=True)
    for i, seq in enumerate(wandering_lines(seed=11, sequences=4, length=150)):
        _write_midi(data / ("sub dir" if i % 2 else "") / f"take {i} l'été.mid", seq, seed=i)
    (data / "broken.midi").write_bytes(b"MThd garbage")
    out = tmp_path / "tables"

    assert main(["markov", "--folder", str(data), "--name", "mine", "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr()
    assert "broken.midi" in said.err and "4 files (1 skipped)" in said.out
    assert (out / "mine.npz").is_file()

    assert main(["markov-score", "--table", str(out / "mine.npz"), "--folder", str(data), "--json",
                 "--per-file", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 4 and report["events"] == sum(f["events"] for f in report["per_file"])
    assert report["bits_per_event"] < report["baseline_bits_per_event"]

    assert main(["markov-score", "--table", str(tmp_path / "none.npz"), "--folder", str(data)]) == 2
    assert "none.npz" in capsys.readouterr().err


def test_every_command_names_a_corpus_with_folder_and_pianist_and_still_takes_the_old_words(capsys):
    """One word each in every sideman-train command; --data and --artist still work, hidden from --help."""
    from sideman_train.cli import build_parser

    parser = build_parser()
    commands = {"markov": ["--name", "x"], "markov-score": ["--style", "x"], "prepare": ["--out", "o"],
                "finetune": ["--model", "m", "--name", "x"], "eval": ["--model", "m"]}
    for command, rest in commands.items():
        new = parser.parse_args([command, *rest, "--folder", "corpus", "--pianist", "Somebody"])
        old = parser.parse_args([command, *rest, "--data", "corpus", "--artist", "Somebody"])
        assert (new.folder, new.pianist) == (old.folder, old.pianist) == (Path("corpus"), "Somebody"), command
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        shown = capsys.readouterr().out
        assert "--folder" in shown and "--pianist" in shown, command
        assert "--data" not in shown and "--artist" not in shown, command


# ---------------------------------------------------------------------------------------------
# The shipped tables, on the corpus

@pytest.mark.corpus
@pytest.mark.skipif(not PIJAMA.is_dir(), reason="PiJAMA not beside the repository")
def test_the_shipped_mehldau_table_beats_the_unigram_on_mehldau_val_files():
    from sideman_train.corpus import list_performances
    from sideman_train.markov_build import encoded_performances, score_report

    assert DEFAULT_STYLE in available_styles()
    model = load_style(DEFAULT_STYLE)
    val = list_performances(PIJAMA, "Brad Mehldau", "val", pijama=True)[:3]
    read, skipped = encoded_performances(val, progress=False)
    assert len(read) == 3 and not skipped
    report = score_report(model, read)
    assert report["bits_per_event"] < report["baseline_bits_per_event"] - 0.5
    for row in report["per_file"]:
        assert row["bits_per_event"] < row["baseline_bits_per_event"]
