"""The transformer in models/transformer: it loads, every file matches its checksum, it stays small,
and (with the corpus) it knows Brad Mehldau better than the Markov voice does."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from sideman.model.bundle import load_bundle
from sideman.model.events import Note
from sideman.model.markov import load_style
from sideman.midi_files import read_performance
from sideman_train.evaluate import BoxVoice, event_arrays, markov_bits, transformer_bits
from sideman_train.export import verify_graphs

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "transformer"
PIJAMA = ROOT.parent / "shared" / "data" / "pijama"

torch.set_num_threads(1)


def test_shipped_model_loads_with_its_styles_and_graphs():
    bundle = load_bundle(MODEL)
    names = {s.name for s in bundle.styles}
    assert bundle.default_style == "mehldau" and {"mehldau", "tatum", "others", "mckenna"} <= names
    assert bundle.model.parameter_count() <= 20_000_000
    assert verify_graphs(MODEL) == []
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert size <= 50_000_000


def test_shipped_model_plays_in_range_and_in_time():
    """The box's voice (the shipped model on the backend the box picks) answers a scale: at least
    as many notes as the call, on the piano, after the call and not spread over a minute."""
    voice = BoxVoice.open(MODEL)
    prompt = [Note(0.25 * i, p, 80, 0.2) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]
    out = voice.continuation(prompt, {"mehldau": 1.0}, seed=0)
    notes = [e for e in out if isinstance(e, Note)]
    assert len(notes) >= len(prompt) and all(21 <= n.pitch <= 108 for n in notes)
    assert out[0].onset_s >= prompt[-1].onset_s and out[-1].onset_s - out[0].onset_s < 60


@pytest.mark.corpus
@pytest.mark.skipif(not PIJAMA.is_dir(), reason="needs ../shared/data/pijama")
def test_shipped_model_beats_the_markov_voice_on_a_mehldau_val_file():
    rows = [r for r in csv.DictReader(open(PIJAMA / "pijama.csv", newline="", encoding="utf-8"))
            if r["artist"] == "Brad Mehldau" and r["split"] == "val"]
    events = read_performance(PIJAMA / rows[0]["midi_path"])[:1500]
    bundle = load_bundle(MODEL)
    bits, count = transformer_bits(bundle, [event_arrays(events)], bundle.style_weights({"mehldau": 1.0}))
    m_bits, m_count = markov_bits(load_style("mehldau"), [events])
    assert count == m_count == len(events)
    assert bits / count < 0.95 * (m_bits / m_count)
