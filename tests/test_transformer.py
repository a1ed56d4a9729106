"""The transformer network and its sampler: the codec both voices share, the loss that only counts
the AI's events, KV-cache stepping equal to the full forward pass, seeded generation and steering
(the box's own sampler: the live voice in `sideman play`'s session, as evaluation plays it), and
model folders that refuse corrupt files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sideman.model.backends import TorchBackend
from sideman.model.bundle import ModelFileError, Style, load_bundle, save_bundle
from sideman.model.conditioning import MODEL_MODES
from sideman.model.events import AI, HUMAN, Note, Pedal, decode, encode, sort_events
from sideman.model.live_stream import LiveContext, draw
from sideman.model.transformer import JazzTransformer, ModelConfig
from sideman_train.batches import performance_windows, stack, to_torch
from sideman_train.duets import scoring_windows
from sideman_train.evaluate import BoxVoice, event_arrays
from sideman_train.fit import masked_bits
from music_fixtures import fixture_markov, varied_line

torch.set_num_threads(1)


def tiny_model(seed: int = 0, context: int = 64, n_styles: int = 4) -> JazzTransformer:
    torch.manual_seed(seed)
    model = JazzTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, head_hidden=32,
                                        context=context, n_styles=n_styles, dropout=0.0))
    with torch.no_grad():  # random but opinionated weights (not near-uniform logits), so inputs matter
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3)
        model.style_table.normal_(0.0, 1.0)
    return model.eval()


def performance(n: int = 40, seed: int = 0) -> list:
    """A line with a chord and pedal changes: every kind of event the codec has."""
    notes = varied_line(n, seed)
    chord = [Note(notes[5].onset_s, p, 70, 0.8) for p in (48, 52, 55)]
    pedals = [Pedal(notes[3].onset_s + 0.01, True), Pedal(notes[n - 1].onset_s + 0.01, False)]
    return sort_events(notes + chord + pedals)


def batch_of(events, voices, style_rows=4, mode="answer"):
    from sideman.model.conditioning import MODEL_MODES, chord_profiles, pulse_features
    enc = encode(events)
    t = len(enc)
    onset = np.array([e.onset_s for e in events])
    pitch = np.array([p for _, p, _, _ in enc])
    batch = {
        "time": torch.tensor([[e[0] for e in enc]]), "pitch": torch.tensor([[e[1] for e in enc]]),
        "duration": torch.tensor([[e[2] for e in enc]]), "velocity": torch.tensor([[e[3] for e in enc]]),
        "voice": torch.tensor([voices]), "chord": torch.tensor(chord_profiles(onset, pitch, np.array(voices)))[None],
        # a 100 bpm grid the tracker is sure of, each event at its own place in the beat
        "pulse": torch.tensor(pulse_features(np.full(t, 100.0), (onset / 0.6) % 1.0, np.full(t, 0.8)))[None],
        "mode": torch.tensor([MODEL_MODES.index(mode)]),
        "style_weights": torch.nn.functional.one_hot(torch.tensor([1]), style_rows).float(),
    }
    batch["loss_mask"] = batch["voice"] == AI
    return batch


# --- codec -----------------------------------------------------------------------------------

def test_codec_round_trip_keeps_the_music():
    events = performance()
    back = decode(encode(events), start_s=events[0].onset_s, voice=HUMAN)
    assert len(back) == len(events)
    for original, decoded in zip(events, back):
        assert type(original) is type(decoded)
        if isinstance(original, Note):
            assert decoded.pitch == original.pitch
            assert abs(decoded.velocity - original.velocity) <= 4
            assert abs(np.log(decoded.duration_s / original.duration_s)) < 0.25
        else:
            assert decoded.down == original.down
    # Re-encoding the decoded events gives the same codes: the bins are a fixed point.
    assert encode(back)[1:] == encode(events)[1:]


def duet_batch():
    """A performance with every third event the AI's: both voices' scores count."""
    events = performance()
    return batch_of(events, [HUMAN if i % 3 else AI for i in range(len(encode(events)))])


def test_training_windows_encode_exactly_what_the_markov_voice_scores():
    """The transformer's windows and the Markov voice's encode() give the same bins, so the bits compare."""
    events = performance(60)
    arrays = event_arrays(events)
    examples = performance_windows(arrays, length=24)
    enc = encode(events)
    seen = 0
    for (start, _), example in zip(scoring_windows(len(enc), 24, 12), examples):
        for i in range(example["time"].shape[0]):
            code = tuple(int(example[k][i]) for k in ("time", "pitch", "duration", "velocity"))
            assert code == enc[start + i] or (start + i == 0 and code[1:] == enc[0][1:])
        seen += int(example["loss_mask"].sum())
    assert seen == len(enc)  # every event scored exactly once


# --- loss ------------------------------------------------------------------------------------

def test_loss_counts_only_the_ai_events():
    model = tiny_model()
    events = performance(30)
    voices = [HUMAN if i < 15 else AI for i in range(len(events))]
    batch = batch_of(events, voices)
    bits, count = masked_bits(model, batch)
    assert int(count) == sum(voices)
    # A duet in which every event is the human's costs the AI nothing: human events are context.
    human_only = batch_of(events, [HUMAN] * len(events))
    assert float(masked_bits(model, human_only)[0].detach()) == 0.0
    # ... whereas changing the pitch target of an AI event changes the loss.
    changed = {k: v.clone() for k, v in batch.items()}
    changed["pitch"][0, -1] = (changed["pitch"][0, -1] + 7) % 128
    assert float(masked_bits(model, changed)[0].detach()) != pytest.approx(float(bits.detach()))
    # A human event's own fields are never a target: change the last event's duration and velocity
    # (nothing after it reads them) and the loss stays the same when that event is the human's.
    last_human = batch_of(events, voices[:-1] + [HUMAN])
    edited = {k: v.clone() for k, v in last_human.items()}
    edited["velocity"][0, -1] = (edited["velocity"][0, -1] + 5) % 16
    edited["duration"][0, -1] = (edited["duration"][0, -1] + 3) % 23
    unchanged = float(masked_bits(model, last_human)[0].detach())
    assert float(masked_bits(model, edited)[0].detach()) == pytest.approx(unchanged)


def test_pedal_events_score_only_time_and_pitch():
    model = tiny_model()
    events = performance(20)
    batch = batch_of(events, [AI] * len(events))
    pedal_at = [i for i, e in enumerate(events) if isinstance(e, Pedal)][-1]
    edited = {k: v.clone() for k, v in batch.items()}
    edited["velocity"][0, pedal_at] = 9   # a pedal's velocity/duration targets cost nothing
    edited["duration"][0, pedal_at] = 5
    with torch.no_grad():
        nats, nats_edited = model.event_nats(batch), model.event_nats(edited)
    assert float(nats_edited[0, pedal_at]) == pytest.approx(float(nats[0, pedal_at]))


# --- KV cache --------------------------------------------------------------------------------

def test_kv_cache_stepping_equals_the_full_forward_pass():
    model = tiny_model(context=24)
    events = performance(30)[:24]
    voices = [HUMAN if (i // 6) % 2 else AI for i in range(len(events))]
    batch = batch_of(events, voices)
    with torch.no_grad():
        full = model(batch)
        full_logits = model.field_logits(full, batch["voice"], batch["time"], batch["pitch"], batch["duration"])
        k, v = model.empty_cache()
        style_vector = model.style_vector(batch["style_weights"])
        for t in range(len(events)):
            previous = (torch.zeros(1, 5, dtype=torch.long) if t == 0 else
                        torch.stack([batch[f][:, t - 1] for f in ("time", "pitch", "duration", "velocity", "voice")], 1))
            h, k, v = model.step(previous, torch.tensor([1.0 if t == 0 else 0.0]), style_vector, batch["mode"],
                                 batch["chord"][:, t], batch["pulse"][:, t], torch.tensor(t), k, v)
            assert torch.allclose(h, full[:, t], atol=1e-5), f"position {t}"
            step_logits = model.field_logits(h[:, None], batch["voice"][:, t:t + 1], batch["time"][:, t:t + 1],
                                             batch["pitch"][:, t:t + 1], batch["duration"][:, t:t + 1])
            for field, logits in step_logits.items():
                assert torch.allclose(logits[:, 0], full_logits[field][:, t], atol=1e-5)


def _style_vector(model, weights) -> np.ndarray:
    with torch.no_grad():
        return model.style_vector(weights)[0].numpy()


def test_rolling_back_is_keeping_the_old_state():
    """The live context's lookahead is a branch: rolled back and sampled again, the same event
    gives the same numbers, and what was committed is untouched."""
    model = tiny_model()
    style = _style_vector(model, torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    context = LiveContext(TorchBackend(model))
    context.start(style, MODEL_MODES.index("answer"), 0.0)
    context.append(context.make_event((3, 60, 5, 8, HUMAN), 0.0, 0.0, 1, style))
    committed = context.state

    def ahead(event, onset):
        return context.push_ahead(context.make_event(event, onset, 0.0, 1, style)).out

    after_a = ahead((2, 64, 5, 8, AI), 0.1)
    context.rollback()
    ahead((9, 40, 2, 3, AI), 0.5)  # a branch, thrown away
    context.rollback()
    again = ahead((2, 64, 5, 8, AI), 0.1)
    assert np.array_equal(after_a.h, again.h) and np.array_equal(after_a.time_logits, again.time_logits)
    assert np.array_equal(context.state.h, committed.h) and context.position == 2


# --- generation: the box's sampler through `sideman play`'s session ------------------------------

@pytest.fixture(scope="module")
def tiny_voice(tmp_path_factory):
    """The live transformer voice on a tiny model, as evaluation plays it (torch backend)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    save_bundle(folder, tiny_model(context=64), STYLES, "mehldau")
    bundle = load_bundle(folder)
    return BoxVoice(bundle, TorchBackend(bundle.model), fixture_markov())


def _notes(events):
    return [(round(e.onset_s, 6), e.pitch, e.velocity) for e in events if isinstance(e, Note)]


def _last_release(events):
    return max(e.onset_s + e.duration_s for e in events if isinstance(e, Note))


def test_same_seed_same_continuation_other_seed_other(tiny_voice):
    prompt = performance(60)   # more events than the context keeps: it slides on the way
    a = tiny_voice.continuation(prompt, {"mehldau": 1.0}, seed=3)
    b = tiny_voice.continuation(prompt, {"mehldau": 1.0}, seed=3)
    c = tiny_voice.continuation(prompt, {"mehldau": 1.0}, seed=4)
    assert len(a) >= 4 and all(e.voice == AI for e in a)
    assert _notes(a) == _notes(b)
    assert _notes(a) != _notes(c)
    assert all(x.onset_s <= y.onset_s for x, y in zip(a, a[1:]))
    assert a[0].onset_s >= _last_release(prompt)


def _pitch_histogram(model, weights, temperature=1.0, n=300):
    """What the live voice draws for the first note of an answer, n times."""
    backend = TorchBackend(model)
    context = LiveContext(backend)
    context.start(_style_vector(model, weights), MODEL_MODES.index("answer"), 0.0)
    state = context.state
    rng = np.random.default_rng(0)
    counts = np.zeros(130)
    for _ in range(n):
        time_bin = draw(state.time_logits, temperature, rng)
        counts[draw(backend.pitch_logits(state.h, AI, time_bin), temperature, rng)] += 1
    return counts / n


def test_style_blend_and_temperature_change_what_is_played():
    model = tiny_model()
    a = _pitch_histogram(model, torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    b = _pitch_histogram(model, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    half = _pitch_histogram(model, torch.tensor([[0.0, 0.5, 0.5, 0.0]]))
    assert np.abs(a - b).sum() > 0.2
    assert np.abs(half - a).sum() > 0.05 and np.abs(half - b).sum() > 0.05
    cold = _pitch_histogram(model, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), temperature=0.3)
    assert (cold > 0).sum() < (a > 0).sum()   # a low "adventure" plays fewer different notes


def test_register_steering_keeps_notes_in_range(tiny_voice):
    prompt = [e for e in performance(10) if isinstance(e, Note)]
    means = []
    for shift in (-12, 12):
        controls = {"register_shift": shift, "left_hand": 0.0}   # the answer's line alone
        low, high = tiny_voice.session("call-response", {"mehldau": 1.0}, **controls).register_around(prompt)
        out = tiny_voice.continuation(prompt, {"mehldau": 1.0}, seed=1, **controls)
        assert out and all(isinstance(e, Note) and low <= e.pitch <= high for e in out), (low, high)
        means.append(np.mean([e.pitch for e in out]))
    assert means[1] > means[0] + 12


def test_accompany_never_plays_before_the_first_human_note_and_keeps_time_order(tiny_voice):
    human = [e for e in performance(30) if isinstance(e, Note) and e.pitch >= 60]
    ai = tiny_voice.accompaniment(human, "mehldau", seed=2, tail_s=2.0)
    assert len(ai) >= 4
    assert all(e.voice == AI for e in ai)
    assert ai[0].onset_s >= human[0].onset_s
    assert all(x.onset_s <= y.onset_s for x, y in zip(ai, ai[1:]))


# --- model folders ---------------------------------------------------------------------------

STYLES = [Style("others", "", 0), Style("mehldau", "Brad Mehldau", 1), Style("tatum", "Art Tatum", 2)]


def test_bundle_round_trip_and_blend_weights(tmp_path):
    model = tiny_model()
    save_bundle(tmp_path, model, STYLES, "mehldau", training={"steps": 1})
    bundle = load_bundle(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[name], tensor)
    assert bundle.default_style == "mehldau"
    weights = bundle.style_weights({"mehldau": 3, "tatum": 1})
    assert weights[0, 1] == pytest.approx(0.75) and weights[0, 2] == pytest.approx(0.25)
    with pytest.raises(KeyError, match="no style 'evans'"):
        bundle.style_weights({"evans": 1})


def test_corrupt_or_missing_model_files_are_refused_clearly(tmp_path):
    model = tiny_model()
    save_bundle(tmp_path, model, STYLES, "mehldau")
    weights = tmp_path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        load_bundle(tmp_path)
    weights.unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(ModelFileError, match="unreadable manifest"):
        load_bundle(tmp_path)
    with pytest.raises(ModelFileError, match="no model manifest"):
        load_bundle(tmp_path / "nowhere")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    save_bundle(tmp_path, tiny_model(), STYLES, "mehldau")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["config"]["d_model"] = 48
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="do not fit"):
        load_bundle(tmp_path)


def test_stacked_windows_pad_without_scoring_the_padding():
    events = performance(30)
    examples = performance_windows(event_arrays(events), length=48)
    batch = to_torch(stack(examples, 48), "cpu", 4)
    assert batch["time"].shape == (1, 48)
    assert int(batch["loss_mask"].sum()) == len(events)
    assert not batch["loss_mask"][0, len(events):].any()


@pytest.mark.parametrize("breakage", [
    lambda m: m.update(config=[1, 2]),
    lambda m: m["config"].update(n_heads=5),
    lambda m: m["config"].update(d_model="wide"),
    lambda m: m.update(styles=["mehldau"]),
    lambda m: m.update(styles=[]),
    lambda m: m.update(weights="weights.pt"),
    lambda m: m["weights"].pop("file"),
    lambda m: m["weights"].update(file="../../etc/passwd"),
    lambda m: m["styles"][1].update(row=99),
    lambda m: m.update(default_style="evans"),
])
def test_every_malformed_manifest_is_a_model_file_error(tmp_path, breakage):
    """The box falls back to the Markov voice on ModelFileError; any other exception would crash it."""
    save_bundle(tmp_path, tiny_model(), STYLES, "mehldau")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    breakage(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError):
        load_bundle(tmp_path)


def test_weights_from_before_the_beat_input_load_and_start_a_bigger_model_where_they_were(tmp_path):
    """A bundle trained on the tempo alone (pulse_dim 1, its layer saved as `tempo_in`) still loads,
    and `fit --init-from` grows it to the beat input with the new columns at zero: the grown model
    computes exactly what the old one did until training teaches it the beat."""
    from sideman.model.bundle import Style, load_bundle, save_bundle
    from sideman_train.fit import init_from_bundle
    torch.manual_seed(0)
    old = JazzTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, head_hidden=32, context=64,
                                      n_styles=4, dropout=0.0, pulse_dim=1)).eval()
    state = {("tempo_in" + k[len("pulse_in"):] if k.startswith("pulse_in.") else k): v
             for k, v in old.state_dict().items()}   # the key names of the shipped weights before
    config = old.config.to_dict()
    config.pop("pulse_dim")                         # ... and a manifest that never heard of pulses
    folder = tmp_path / "old"
    save_bundle(folder, old, [Style("others", "", 0)], "others")
    import json
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"] = config
    torch.save(state, folder / "weights.pt")
    from sideman.model.bundle import sha256_of
    manifest["weights"]["sha256"] = sha256_of(folder / "weights.pt")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_bundle(folder).model
    assert loaded.config.pulse_dim == 1
    grown = JazzTransformer(ModelConfig.from_dict({**config, "pulse_dim": 4})).eval()
    assert init_from_bundle(grown, folder) == []
    batch = duet_batch()
    with torch.no_grad():
        assert torch.allclose(grown(batch), loaded(batch), atol=1e-6)
        assert torch.allclose(loaded(batch), old(batch), atol=1e-6)
        grown.pulse_in.weight[:, 1:] = torch.randn(32, 3)   # once it learns the beat, the beat matters
        assert not torch.allclose(grown(batch), loaded(batch), atol=1e-3)


def test_fit_init_from_grows_the_feed_forward_layer_without_changing_what_the_model_plays(tmp_path):
    """`fit --init-from` into a config with a wider feed-forward layer (more capacity for the next
    session's training): the grown model scores every event exactly as the bundle did, and its new
    hidden units are live (random), so training can use them once the layer after them moves."""
    from sideman.model.bundle import Style, save_bundle
    from sideman_train.fit import init_from_bundle
    torch.manual_seed(0)
    old = JazzTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, head_hidden=32, context=64,
                                      n_styles=4, dropout=0.0)).eval()
    folder = tmp_path / "old"
    save_bundle(folder, old, [Style("others", "", 0)], "others")
    grown = JazzTransformer(ModelConfig.from_dict({**old.config.to_dict(), "d_ff": 160})).eval()
    assert init_from_bundle(grown, folder) == []
    batch = duet_batch()
    with torch.no_grad():
        assert torch.allclose(grown(batch), old(batch), atol=1e-6)
        first = grown.blocks[0].mlp
        assert first[0].weight[64:].abs().sum() > 0          # the new units compute something ...
        assert first[2].weight[:, 64:].abs().sum() == 0      # ... that nothing reads yet
        first[2].weight[:, 64:] = 0.02 * torch.randn(32, 96)
        assert not torch.allclose(grown(batch), old(batch), atol=1e-4)


def test_fit_init_from_refuses_a_wider_model_it_cannot_grow_faithfully(tmp_path):
    """A wider model (d_model) would change what the landed weights compute (every layer norm sees
    new columns), so --init-from says so instead of starting from a silently different network."""
    from sideman.model.bundle import Style, save_bundle
    from sideman_train.fit import init_from_bundle
    old = JazzTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, head_hidden=32, context=64,
                                      n_styles=4, dropout=0.0))
    save_bundle(tmp_path, old, [Style("others", "", 0)], "others")
    wider = JazzTransformer(ModelConfig.from_dict({**old.config.to_dict(), "d_model": 48}))
    with pytest.raises(SystemExit, match="d_model is 32 there and 48"):
        init_from_bundle(wider, tmp_path)
