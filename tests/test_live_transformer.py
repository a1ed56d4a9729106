"""The transformer as the live voice: lookahead, commit and rollback, steering, speculative
answers, the Markov voice taking over, and the backends agreeing with each other.

Most tests run a tiny random model saved in code (fast, no corpus); the ones about what a musician
hears with the shipped model use models/transformer (in the repository)."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sideman.controls import CONTROLS  # noqa: E402
from sideman.listen.phrases import phrase_end_gap_s  # noqa: E402
from sideman.model.backends import OnnxBackend, TorchBackend, open_backend  # noqa: E402
from sideman.model.bundle import Style, load_bundle, save_bundle  # noqa: E402
from sideman.model.conditioning import MODEL_MODES  # noqa: E402
from sideman.model.events import AI, HUMAN, Note  # noqa: E402
from sideman.model.live_stream import LiveContext  # noqa: E402
from sideman.paths import models_dir  # noqa: E402
from sideman.play.improviser import MarkovImproviser  # noqa: E402
from sideman.play.live_transformer import TransformerImproviser  # noqa: E402
from sideman.play.session import COMMIT_AHEAD_S, Session  # noqa: E402
from sideman.play.simulate import play_performance  # noqa: E402
from sideman.play.voices import make_transformer_session  # noqa: E402

from music_fixtures import fixture_markov, varied_line  # noqa: E402
from test_transformer import tiny_model  # noqa: E402

SHIPPED = models_dir() / "transformer"
STYLES = ("swing", "stride", "ballad")


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    styles = [Style(name, name.title(), row) for row, name in enumerate(STYLES)]
    save_bundle(folder, tiny_model(seed=3, context=64, n_styles=4), styles, "swing")
    return load_bundle(folder)


@pytest.fixture(scope="module")
def shipped():
    return load_bundle(SHIPPED)


def session_on(bundle, mode="call-response", seed=0, backend=None, styles=("swing", "stride"), **controls):
    values = {c.name: c.default for c in CONTROLS}
    values.update(controls)
    improviser = TransformerImproviser(bundle, backend or TorchBackend(bundle.model), MarkovImproviser(fixture_markov()),
                                       step_budget_s=None)
    return Session(improviser, mode=mode, controls=values, styles=styles, seed=seed)


def call_phrases(n: int = 6, seed: int = 0, gap_s: float = 2.5) -> list[Note]:
    """Phrases of eight notes in mixed rhythm, each followed by room for an answer."""
    notes, t = [], 0.0
    for k in range(n):
        phrase = [replace(note, onset_s=note.onset_s + t) for note in varied_line(8, seed + k)]
        notes += phrase
        t = max(n.onset_s + n.duration_s for n in phrase) + gap_s
    return notes


def human_events(n=12, start=0.0):
    return [(3, 60 + (i * 5) % 17, 4, 9, HUMAN) for i in range(n)], [start + 0.2 * i for i in range(n)]


def _same(a, b, position: int) -> bool:
    """Bit for bit, everything the model sees from here: h, the time logits and the cache's slots
    below `position` (the slots from there on are overwritten or masked by the next step)."""
    ha, ta, (ka, va) = a.h, a.time_logits, _arrays(a.cache)
    hb, tb, (kb, vb) = b.h, b.time_logits, _arrays(b.cache)
    return all(np.array_equal(x, y) for x, y in ((ha, hb), (ta, tb), (ka[..., :position, :], kb[..., :position, :]),
                                                 (va[..., :position, :], vb[..., :position, :])))


def _arrays(cache):
    return tuple(np.asarray(c.numpy() if hasattr(c, "numpy") else c) for c in cache)


def started_context(bundle, engine):
    """A backend, the bundle's default style vector and a context just started on them."""
    backend = open_backend(bundle, engine)
    style = bundle.style_vector({bundle.default_style: 1.0})
    context = LiveContext(backend)
    context.start(style, 1, 0.0)
    return backend, style, context


def fresh_context(backend, committed, style, mode=1):
    context = LiveContext(backend)
    context.start(style, mode, 0.0)
    for event in committed:
        context.append(event)
    return context


# --- lookahead, commit, rollback ---------------------------------------------------------------

@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_rollback_leaves_exactly_the_state_a_fresh_recompute_would(tiny_bundle, shipped, engine):
    backend, style, context = started_context(tiny_bundle if engine == "torch" else shipped, engine)
    events, onsets = human_events(10)
    for event, onset in zip(events, onsets):
        context.append(context.make_event(event, onset, 0.0, 1, style))
    # The AI samples ahead three notes, one of them is played (committed), the player comes in.
    for i, pitch in enumerate((50, 53, 57, 60)):
        context.push_ahead(context.make_event((5, pitch, 6, 8, AI), onsets[-1] + 0.1 * (i + 1), 0.0, 1, style))
    context.commit_next()
    context.append(context.make_event((4, 72, 5, 10, HUMAN), onsets[-1] + 0.15, 0.0, 1, style))
    assert not context.ahead
    fresh = fresh_context(backend, context.committed, style)
    assert [e.encoded for e in fresh.committed] == [e.encoded for e in context.committed]
    assert context.position == fresh.position
    assert _same(context.state, fresh.state, context.position), \
        "rollback must leave the state of a fresh recompute, bit for bit"
    # The lookahead's slots are still in the shared cache, unseen: the next event, sampled ahead on
    # both, comes out the same.
    nxt = context.make_event((5, 62, 6, 8, AI), onsets[-1] + 0.4, 0.0, 1, style)
    assert _same(context.push_ahead(nxt).out._replace(cache=context.latest.cache),
                 fresh.push_ahead(nxt).out._replace(cache=fresh.latest.cache), context.ahead_position)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_the_lookahead_holds_one_cache_not_one_per_event(tiny_bundle, shipped, engine):
    """Each lookahead event keeps only its small state; the context keeps the one newest cache.
    (One cache per event was 1.5 MB an event with the shipped model, 72 MB at 48 ahead.)"""
    backend, style, context = started_context(tiny_bundle if engine == "torch" else shipped, engine)
    for i in range(20):
        context.push_ahead(context.make_event((5, 50 + i, 6, 8, AI), 0.1 * (i + 1), 0.0, 1, style))
    assert all(item.out.cache is None for item in context.ahead)
    assert context.latest.cache is context.state.cache
    context.commit_next()
    assert context.state.cache is context.latest.cache and context.position == 2


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_sliding_the_cache_prefills_what_stepping_would_compute(tiny_bundle, shipped, engine):
    backend, style, context = started_context(tiny_bundle if engine == "torch" else shipped, engine)
    n = backend.context + 5   # past the end: the cache slides once
    for i in range(n):
        voice = HUMAN if i % 3 else AI
        context.append(context.make_event((3 + i % 5, 48 + (i * 7) % 36, 4, 8, voice), 0.15 * i, 0.0, 1, style))
    assert context.slides == 1
    assert context.position == len(context.committed) + 1 <= backend.context
    stepped = LiveContext(backend)
    stepped.start(style, 1, 0.0)
    for i, event in enumerate(context.committed):
        out = stepped._step(event, i + 1)
    np.testing.assert_allclose(context.state.h, out.h, atol=2e-4)
    np.testing.assert_allclose(context.state.time_logits, out.time_logits, atol=2e-4)


def test_the_player_rolls_the_lookahead_back_and_it_is_sampled_again_after_them(tiny_bundle):
    session = session_on(tiny_bundle, mode="duet")
    line = varied_line(24, 1)
    messages = []
    for note in line:
        messages.append((note.onset_s, (0x90, note.pitch, note.velocity)))
        messages.append((note.onset_s + note.duration_s, (0x80, note.pitch, 0)))
    messages.sort()
    voice = session.improviser
    t, i, rolled_back_after = 0.0, 0, []
    while t < line[-1].onset_s + 2:
        while i < len(messages) and messages[i][0] <= t:
            at, message = messages[i]
            had_ahead = bool(voice.context.ahead)
            out = session.hear(message, int(at * 1e9))
            if message[0] == 0x90:
                # The human event is in the context; whatever the AI has sampled since comes after
                # it (nothing sampled before it survived).
                committed = voice.context.committed
                here = max(k for k, e in enumerate(committed) if e.encoded[4] == HUMAN and e.onset_s == at)
                assert all(e.onset_s >= at for e in committed[here + 1:])
                assert all(item.event.onset_s >= at for item in voice.context.ahead)
                if had_ahead:
                    rolled_back_after.append(at)
            for item in out:
                if item != "hush" and item[1][0] & 0xF0 == 0x90:
                    assert item[0] / 1e9 <= at + COMMIT_AHEAD_S + 1e-9, "a note committed earlier than its commit point"
            i += 1
        out = session.tick(int(t * 1e9))
        for item in out:
            if item != "hush" and item[1][0] & 0xF0 == 0x90:
                assert item[0] / 1e9 <= t + COMMIT_AHEAD_S + 1e-9, "a note committed earlier than its commit point"
        if voice.context.ahead and voice.plans:
            # The lookahead reaches the horizon (or the end of what was asked for).
            last = voice.context.ahead[-1].event.onset_s
            assert last > t or voice._generating_plan() is None
        t += 0.005
    assert len(rolled_back_after) >= 5
    assert voice.rollbacks >= len(rolled_back_after)


def test_same_seed_same_duet_other_seed_other_duet(tiny_bundle):
    human = call_phrases(4)

    def duet(seed):
        return [(round(n.onset_s, 6), n.pitch, n.velocity) for n in play_performance(human, session_on(tiny_bundle, seed=seed)).ai]

    first = duet(7)
    assert first and first == duet(7)
    assert first != duet(8)


def test_in_call_and_response_no_ai_note_sounds_during_the_players_phrase(shipped):
    human = call_phrases(8, seed=3)
    session = make_transformer_session("call-response", seed=2, step_budget_s=None)
    assert isinstance(session.improviser, TransformerImproviser)
    result = play_performance(human, session)
    assert result.ai_onsets_during_human_notes() == 0
    phrases = [(p.start_s, p.end_s) for p in session.log.phrases]
    assert len(phrases) == 8
    for note in result.ai:
        assert not any(start <= note.onset_s <= end for start, end in phrases), f"AI note at {note.onset_s:.3f} s inside a phrase"
    answered = [a for a in session.log.answers if a.first_note_s is not None]
    assert len(answered) == 8
    # The patience silence for each phrase's length, then at most 0.15 s to the beat grid.
    silences = [phrase_end_gap_s(0.5, p.end_s - p.start_s) for p in session.log.phrases]
    late = [a.first_note_s - a.phrase_end_s - silence for a, silence in zip(answered, silences)]
    assert -0.01 <= float(np.median(late)) <= 0.16, f"answers start {late} s after the phrase's silence"


def test_a_speculative_answer_is_ready_when_the_phrase_ends(tiny_bundle):
    session = session_on(tiny_bundle, seed=1)
    result = play_performance(call_phrases(5, seed=4), session)
    voice = session.improviser
    assert voice.speculation["computed"] >= 5
    assert voice.speculation["adopted"] >= 4, voice.speculation
    # An adopted answer still starts where the session put it.
    for answer in session.log.answers:
        if answer.first_note_s is not None:
            assert answer.first_note_s == pytest.approx(answer.start_s, abs=1e-6)
    assert result.ai


# --- steering -------------------------------------------------------------------------------------

def _next_event_distribution(bundle, blend, temperature=1.0, mode="answer"):
    backend = TorchBackend(bundle.model)
    with torch.no_grad():
        style = bundle.model.style_vector(bundle.style_weights(blend))[0].numpy()
    context = LiveContext(backend)
    context.start(style, MODEL_MODES.index(mode), 0.0)
    events, onsets = human_events(12)
    for event, onset in zip(events, onsets):
        context.append(context.make_event(event, onset, 0.0, MODEL_MODES.index(mode), style))
    state = context.state
    z = backend.pitch_logits(state.h, AI, 5) / temperature
    p = np.exp(z - z.max())
    return p / p.sum()


def test_the_style_blend_and_temperature_change_the_distribution_of_what_is_played(shipped):
    mehldau = _next_event_distribution(shipped, {"mehldau": 1.0})
    tatum = _next_event_distribution(shipped, {"tatum": 1.0})
    half = _next_event_distribution(shipped, {"mehldau": 0.5, "tatum": 0.5})

    def kl(p, q):
        return float(np.sum(p * np.log((p + 1e-12) / (q + 1e-12))))

    assert kl(mehldau, tatum) > 0.01
    assert 0 < kl(half, mehldau) < kl(tatum, mehldau) and 0 < kl(half, tatum) < kl(mehldau, tatum)
    cool = _next_event_distribution(shipped, {"mehldau": 1.0}, temperature=0.5)
    hot = _next_event_distribution(shipped, {"mehldau": 1.0}, temperature=1.6)

    def entropy(p):
        return float(-np.sum(p * np.log(p + 1e-12)))

    assert entropy(cool) < entropy(mehldau) < entropy(hot)


def test_the_knobs_act_on_the_notes_played(tiny_bundle):
    human = call_phrases(6, seed=5)

    def ai_notes(**controls):
        return play_performance(human, session_on(tiny_bundle, seed=4, **controls)).ai

    base = ai_notes()
    other_style = ai_notes(style_blend=1.0)
    assert [n.pitch for n in base] != [n.pitch for n in other_style]
    cold, hot = ai_notes(temperature=0.2), ai_notes(temperature=2.0)
    assert len({n.pitch for n in cold}) < len({n.pitch for n in hot})
    low = ai_notes(register_shift=-24)
    assert np.mean([n.pitch for n in low]) < np.mean([n.pitch for n in base]) - 12


# --- degradation ------------------------------------------------------------------------------------

def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\0" * 64
    path.write_bytes(bytes(data))


def test_a_corrupt_or_missing_model_leaves_the_markov_voice_playing_and_says_so(tmp_path):
    folder = tmp_path / "transformer"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("samples", "*.png", "*.csv"))
    _damage(folder / "weights.pt")
    said = []
    # Only the weights are damaged: the exported graphs (what auto plays on) do not need them.
    session = make_transformer_session("call-response", model_dir=folder, warn=said.append)
    assert isinstance(session.improviser, TransformerImproviser) and not said
    _damage(folder / "onnx" / "step.onnx")
    session = make_transformer_session("call-response", model_dir=folder, warn=said.append)
    assert isinstance(session.improviser, MarkovImproviser)
    message = said[-1]
    assert "step.onnx" in message and "weights.pt" in message and "corrupt" in message
    assert message.endswith("the Markov voice plays instead")
    assert session.warnings == [message]
    result = play_performance(call_phrases(2), session)
    assert result.ai, "the Markov voice answers"
    said.clear()
    session = make_transformer_session("call-response", model_dir=tmp_path / "nowhere", warn=said.append)
    assert isinstance(session.improviser, MarkovImproviser) and "Markov voice plays instead" in said[0]


def test_corrupt_onnx_graphs_leave_the_transformer_on_torch(tmp_path):
    folder = tmp_path / "transformer"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("samples", "*.png", "*.csv"))
    (folder / "onnx" / "step.onnx").write_bytes(b"not a graph")
    said = []
    session = make_transformer_session("call-response", model_dir=folder, warn=said.append)
    assert isinstance(session.improviser, TransformerImproviser)
    assert session.improviser.backend.name == "torch"
    assert any("step.onnx" in text and "torch" in text for text in said)
    assert open_backend(load_bundle(folder), "torch").name == "torch"


def test_the_onnx_path_runs_without_torch_in_the_process():
    import subprocess
    import sys

    code = ("import sys; from sideman.play.voices import make_transformer_session; "
            "s = make_transformer_session(); print(s.improviser.name, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["transformer[onnx]", "False"]


class SlowBackend:
    """The real backend, made slow on demand (a busy CPU, a thermal throttle)."""

    def __init__(self, inner, delay_s):
        self.inner, self.delay_s, self.slow = inner, delay_s, True
        self.name, self.context, self.d_model = "slow-" + inner.name, inner.context, inner.d_model

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, *args):
        if self.slow:
            time.sleep(self.delay_s)
        return self.inner.step(*args)


def test_steps_over_budget_hand_over_to_markov_without_a_gap_and_the_transformer_comes_back(tiny_bundle):
    backend = SlowBackend(TorchBackend(tiny_bundle.model), delay_s=0.03)
    values = {c.name: c.default for c in CONTROLS}
    voice = TransformerImproviser(tiny_bundle, backend, MarkovImproviser(fixture_markov()),
                                  step_budget_s=0.015, retry_s=6.0)  # half the slow step; a busy 2-core machine made real ones 5-6 ms
    session = Session(voice, mode="duet", controls=values, styles=("swing",), seed=0)
    line = varied_line(120, 2)   # 30+ s of playing: the duet plays along all the time
    statuses = []
    original = voice._fall_back

    def watched(reason, now_s):
        statuses.append((now_s, reason))
        original(reason, now_s)
        backend.slow = False   # the CPU calms down: the next try goes well
    voice._fall_back = watched
    result = play_performance(line, session)
    assert statuses and "over budget" in statuses[0][1]
    fell_at = statuses[0][0]
    # The duet went on: AI notes within every second after the hand-over until the end of the line.
    onsets = np.array([n.onset_s for n in result.ai])
    for second in np.arange(fell_at, min(fell_at + 6.0, line[-1].onset_s - 1), 0.5):
        assert np.any((onsets >= second) & (onsets < second + 1.5)), f"a gap in the duet at {second:.1f} s"
    assert voice.healthy, "the transformer plays again after its rest"
    assert voice.status["voice"] == "transformer"
    assert len(statuses) == 1, statuses


# --- backends ---------------------------------------------------------------------------------------

def test_onnx_and_torch_backends_agree_on_the_shipped_model(shipped):
    torch_backend, onnx_backend = TorchBackend(shipped.model), open_backend(shipped, "onnx")
    assert isinstance(onnx_backend, OnnxBackend)
    style = shipped.model.style_vector(shipped.style_weights({"mehldau": 1.0}))[0].detach().numpy()
    a = LiveContext(torch_backend)
    b = LiveContext(onnx_backend)
    for context in (a, b):
        context.start(style, 1, 0.1)
    events, onsets = human_events(30)
    for event, onset in zip(events, onsets):
        for context in (a, b):
            context.append(context.make_event(event, onset, 0.1, 1, style))
    np.testing.assert_allclose(a.state.h, b.state.h, atol=1e-3)
    np.testing.assert_allclose(a.state.time_logits, b.state.time_logits, atol=1e-3)
    for backend_a, backend_b in ((torch_backend, onnx_backend),):
        np.testing.assert_allclose(backend_a.pitch_logits(a.state.h, AI, 4), backend_b.pitch_logits(a.state.h, AI, 4), atol=1e-3)
        np.testing.assert_allclose(backend_a.velocity_logits(a.state.h, AI, 4, 60, 5),
                                   backend_b.velocity_logits(a.state.h, AI, 4, 60, 5), atol=1e-3)


def test_auto_picks_onnx_when_the_graphs_are_there_and_warm_up_reports_its_time(shipped):
    backend = open_backend(shipped, "auto")
    assert backend.name == "onnx"
    assert backend.warm_up(steps=4) > 0


def test_warm_up_fits_a_context_shorter_than_its_steps(tmp_path):
    """A 16-event model (smaller than the 24 warm-up steps) warms up within its positions."""
    save_bundle(tmp_path, tiny_model(seed=1, context=16, n_styles=4), [Style("swing", "Swing", 0)], "swing")
    bundle = load_bundle(tmp_path)
    backend = TorchBackend(bundle.model)
    assert backend.context == 16
    assert backend.warm_up() > 0          # 24 steps by default: positions past 15 raised IndexError


WJAZZD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wjazzd"


@pytest.mark.corpus
@pytest.mark.skipif(not WJAZZD.is_dir(), reason="needs ../shared/data/wjazzd")
def test_wjazzd_solos_are_answered_after_the_patience_silence_and_never_interrupted():
    from sideman.midi_files import read_performance

    gaps, interruptions = [], 0
    for path in sorted(WJAZZD.glob("*.mid"))[:4]:
        session = make_transformer_session("call-response", seed=1, step_budget_s=None)
        duet = play_performance(read_performance(path), session)
        interruptions += duet.ai_onsets_during_human_notes()
        gaps += [a.first_note_s - a.phrase_end_s for a in session.log.answers
                 if a.first_note_s is not None and a.phrase_end_s is not None]
    assert len(gaps) >= 40
    # 0.61-0.81 s by the phrase's length, longer for a player with long breaths; then the grid wait
    assert 0.6 <= float(np.median(gaps)) <= 0.81 + 0.15
    assert interruptions == 0


def test_a_knob_turned_during_an_answer_acts_on_its_next_notes(tiny_bundle):
    """Register shift turned down two octaves in the middle of a long answer: the notes after
    the turn (past the commit window) are lower, the ones before are not touched."""
    human = call_phrases(1, seed=6, gap_s=8.0)
    # The line moves with the knob (the left hand, planned with the answer below the call, does not).
    session = session_on(tiny_bundle, seed=3, answer_length=2.0, left_hand=0.0)
    turned_at = None
    from sideman.play.simulate import SimulatedScheduler, performance_messages

    scheduler, messages, i = SimulatedScheduler(), performance_messages(human), 0
    t = 0.0
    while t < human[-1].onset_s + 8.0:
        while i < len(messages) and messages[i][0] <= t:
            scheduler.take(session.hear(messages[i][1], int(messages[i][0] * 1e9)), messages[i][0])
            i += 1
        if turned_at is None and session.log.answers and session.log.answers[-1].notes >= 2:
            turned_at = t
            session.controls["register_shift"] = -24
        scheduler.advance(t)
        scheduler.take(session.tick(int(t * 1e9)), t)
        t += 0.005
    scheduler.finish(t)
    assert turned_at is not None
    before = [n.pitch for n in scheduler.notes if n.onset_s <= turned_at + COMMIT_AHEAD_S]
    after = [n.pitch for n in scheduler.notes if n.onset_s > turned_at + COMMIT_AHEAD_S + 0.01]
    assert len(before) >= 2 and len(after) >= 4, (before, after)
    assert max(after) < min(before) or np.mean(after) < np.mean(before) - 12


def test_model_bench_reports_each_backend_side_by_side():
    from sideman_bench.model import WARM_UP_EVENTS, run_model_bench

    result = run_model_bench(("torch", "onnx"), events=120)
    rows = result["backends"]
    assert [r["backend"] for r in rows] == ["torch", "onnx"], rows
    for row in rows:
        assert row["event"]["n"] == 120 - WARM_UP_EVENTS and row["markov_event"]["n"] > 0
        # Real time: the music generated lasts longer than it took to compute.
        assert row["rtf"] > 1 and 0 < row["ready_s"] < 60 and row["peak_rss_mb"] > 50
    assert rows[0]["torch_loaded"] and not rows[1]["torch_loaded"]
    assert "onnx" in result["ratios_vs_torch"]


def test_tensorrt_asked_for_without_its_provider_says_so_and_plays_on_torch():
    """This machine's onnxruntime has no TensorRT provider (the box's onnxruntime-gpu would)."""
    import onnxruntime

    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT")
    said = []
    session = make_transformer_session("call-response", model_backend="tensorrt", warn=said.append)
    assert session.improviser.name == "transformer[torch]"
    assert any("TensorRT execution provider" in text and "torch" in text for text in said)
    assert open_backend(load_bundle(SHIPPED), "auto").name == "onnx"   # auto does not ask for it


def test_playing_along_with_the_transformer_keeps_playing_past_the_first_minute():
    """Duet mode over 75 s of the soak's player (phrases of 2-4 bars with a beat or two of rest,
    left-hand chords, the pedal; 120 BPM): the AI plays in every 25 s. (The session used to drop a
    plan whose next note was not sampled yet as if it were over; from about 45 s on every bar was
    dropped and the AI fell silent for good: found by the hour's soak.)"""
    from sideman_bench.soak import player_phrase

    rng = np.random.default_rng(1)
    played, t = [], 0.5
    while t < 75.0:
        timed, t = player_phrase(rng, t, answering=False)
        played += timed
    session = make_transformer_session("duet", seed=1, step_budget_s=None)
    assert isinstance(session.improviser, TransformerImproviser)
    result = play_performance([], session, tail_s=1.0, extra_messages=played)
    per_window = [sum(1 for n in result.ai if k * 25 <= n.onset_s < (k + 1) * 25) for k in range(3)]
    assert min(per_window) >= 20, f"AI notes per 25 s: {per_window}"


# --- when the player plays again -------------------------------------------------------------------

def test_the_voice_guesses_when_the_player_returns_after_their_notes_and_only_when_trained_to(tiny_bundle, tmp_path):
    from sideman.model.turns import return_chance
    folder = tmp_path / "hears-turns"
    save_bundle(folder, tiny_bundle.model, tiny_bundle.styles, "swing", training={"train": {"human_weight": 0.25}})
    hearing, deaf = load_bundle(folder), tiny_bundle
    for bundle, hears in ((hearing, True), (deaf, False)):
        session = session_on(bundle)
        voice = session.improviser
        assert voice.player_returns(0.0, 0.5) is None          # nothing heard yet
        play_performance(list(varied_line(6, 1)), session, tail_s=0.0)
        last = voice.context.committed[-1]
        assert last.encoded[4] == HUMAN
        chance = voice.player_returns(last.onset_s + 0.4, 0.5)
        if not hears:
            assert chance is None, "a model never trained on the player's events has no opinion"
            continue
        assert 0.0 <= chance <= 1.0
        # it is the model's human-voice time head read as a turn (not the AI's)
        state = voice.context.state
        assert chance == pytest.approx(return_chance(state.human_time_logits, 0.4, 0.5))
        assert not np.allclose(state.human_time_logits, state.time_logits)
        # after the AI's own note it has nothing to say about the player
        voice.context.append(voice.context.make_event((5, 70, 6, 8, AI), last.onset_s + 0.6, 0.0, 1,
                                                      voice.style_vector(session.steering)))
        assert voice.player_returns(last.onset_s + 0.8, 0.5) is None


def test_the_answer_density_offset_makes_answers_busier_and_leaves_comping_alone(tiny_bundle, monkeypatch):
    """live_transformer.ANSWER_DENSITY_NATS (the calibration that gives a default answer its notes
    per second) moves answers; comping keeps its own rules: the same seed comps the same notes."""
    import sideman.play.live_transformer as live_transformer

    def played(mode: str, offset: float) -> list[Note]:
        monkeypatch.setattr(live_transformer, "ANSWER_DENSITY_NATS", offset)
        return play_performance(call_phrases(4, seed=4), session_on(tiny_bundle, mode=mode, seed=1)).ai

    sparse, busy = played("call-response", -3.0), played("call-response", 3.0)
    assert len(busy) > 1.2 * len(sparse), (len(sparse), len(busy))   # 37 against 29 when written
    comp = [(n.onset_s, n.pitch) for n in played("comp", -3.0)]
    assert comp and comp == [(n.onset_s, n.pitch) for n in played("comp", 3.0)]


def test_after_the_opening_an_answer_keeps_working_the_calls_interval_cells(shipped, monkeypatch):
    """The same answers (same seeds, so the same opening) with and without the lean on the call's
    cells (motifs.CELL_NATS): with it, the shipped voice's line goes on completing the call's leaps
    and turns."""
    from sideman.play import motifs
    from test_partner_listens import CALL, CALL_END

    cells = motifs.interval_cells(CALL)
    lean = motifs.CELL_NATS
    counts = {}
    for nats in (0.0, lean):
        monkeypatch.setattr(motifs, "CELL_NATS", nats)
        counts[nats] = 0
        for seed in range(1, 9):
            session = session_on(shipped, seed=seed, styles=("mehldau",), left_hand=0.0)
            pitches = [n.pitch for n in motifs.top_line(
                [n for n in play_performance(list(CALL), session, tail_s=5.0).ai if n.onset_s >= CALL_END])]
            steps = [b - a for a, b in zip(pitches, pitches[1:])]
            counts[nats] += sum(cell in cells for cell in zip(steps, steps[1:]))
    assert counts[lean] >= 2 * counts[0.0] + 4, counts   # 20 against 6 when written
