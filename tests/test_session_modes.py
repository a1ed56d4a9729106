"""The session's modes through `play_performance` (the same Session code the live box runs, on a
simulated clock): when the AI plays, where, and with what material."""

from __future__ import annotations

import pytest

from music_fixtures import fixture_markov, fixture_session, line, scale_walk
from sideman.listen.phrases import phrase_end_gap_s
from sideman.model.events import Note, Pedal
from sideman.play.improviser import MarkovImproviser
from sideman.play.session import Session
from sideman.play.simulate import play_performance

BEAT = 0.5  # 120 BPM


def phrases_with_rests(n_phrases: int, bars_each: float, rest_bars: float, start_s: float = 1.0, seed: int = 0):
    """Eighth-note phrases in the right hand, separated by rests; returns (notes, [(start, end)])."""
    notes, spans = [], []
    t = start_s
    for k in range(n_phrases):
        count = int(bars_each * 8)
        phrase = line(t, scale_walk(count, seed + k), BEAT / 2)
        notes += phrase
        spans.append((phrase[0].onset_s, phrase[-1].onset_s + phrase[-1].duration_s))
        t += (bars_each + rest_bars) * 4 * BEAT
    return notes, spans


def test_call_response_answers_after_each_phrase_and_never_during_one():
    human, spans = phrases_with_rests(4, bars_each=2, rest_bars=2.5)
    duet = play_performance(human, fixture_session("call-response"))
    assert duet.ai, "no answer at all"
    for start, end in spans:
        inside = [n for n in duet.ai if start + 0.1 < n.onset_s < end]
        assert not inside, f"AI played during the phrase {start:.2f}-{end:.2f}: {inside[:3]}"
        answer = [n for n in duet.ai if end < n.onset_s < end + 4 * 4 * BEAT]
        assert answer, f"no answer after the phrase ending at {end:.2f}"
        gap = answer[0].onset_s - end
        # The patience silence for a phrase this long, then at most 0.15 s to the beat grid.
        silence = phrase_end_gap_s(0.5, end - start)
        assert silence - 0.01 < gap <= silence + 0.15 + 0.01, f"answer started {gap * 1000:.0f} ms after the phrase"
    summary = duet.summary()
    assert summary["phrases_heard"] == 4 and summary["answers"] == 4
    assert summary["ai_onsets_during_human_notes"] == 0


def test_player_barging_in_stops_the_answer_within_100_ms():
    first = line(1.0, scale_walk(16, 1), BEAT / 2)               # a two-bar call
    restart = first[-1].onset_s + first[-1].duration_s + 1.2     # comes back mid-answer
    second = line(restart, scale_walk(8, 2), BEAT / 2)
    duet = play_performance(first + second, fixture_session("call-response", answer_length=2.0))
    assert [n for n in duet.ai if n.onset_s < restart], "the AI never started answering"
    still_sounding = [n for n in duet.ai if n.onset_s < restart and n.onset_s + n.duration_s > restart + 0.1]
    assert not still_sounding, f"AI notes rang on past the barge-in: {still_sounding}"
    assert not [n for n in duet.ai if restart <= n.onset_s < second[-1].onset_s]
    assert duet.session.log.barge_ins >= 1


def test_answer_length_follows_the_call_and_the_control():
    short_call = line(1.0, scale_walk(8, 3), BEAT / 2)       # one bar
    long_call = line(1.0, scale_walk(32, 3), BEAT / 2)       # four bars

    def answer_span(call, **controls):
        duet = play_performance(call, fixture_session("call-response", density=0.8, **controls))
        end = call[-1].onset_s + call[-1].duration_s
        onsets = [n.onset_s for n in duet.ai if n.onset_s > end]
        return onsets[-1] - onsets[0]

    bar = 4 * BEAT
    assert answer_span(short_call) <= 1.0 * bar + 0.05
    assert 2.0 * bar < answer_span(long_call) <= 4.0 * bar + 0.05
    assert answer_span(long_call, answer_length=0.25) <= 1.0 * bar + 0.05


def test_comp_plays_below_the_player_on_the_beat_grid_and_sparser():
    melody = line(1.0, scale_walk(64, 4, low=67, high=86), BEAT / 2)  # eight bars of right hand
    duet = play_performance(melody, fixture_session("comp"))
    late = [n for n in duet.ai if n.onset_s > 1.0 + 2 * 4 * BEAT]   # once the tempo is known
    assert late, "comp played nothing"
    lowest_human = min(n.pitch for n in melody)
    assert max(n.pitch for n in duet.ai) < lowest_human
    onsets = sorted({round(n.onset_s, 4) for n in late})
    off_grid = [t for t in onsets if abs(((t - 1.0) / (BEAT / 2)) - round((t - 1.0) / (BEAT / 2))) * BEAT / 2 > 0.03]
    assert not off_grid, f"comp onsets off the eighth-note grid: {off_grid[:5]}"
    assert len(onsets) < 0.5 * len(melody), "comping should be sparser than the melody"
    assert not [n for n in duet.ai if n.onset_s > melody[-1].onset_s + 3 * 4 * BEAT], "comp kept going after the player stopped"


def test_trading_alternates_at_bar_lines_from_the_tracked_tempo():
    bars_per_turn, bar = 2, 4 * BEAT
    turn = bars_per_turn * bar
    start = 1.0
    # The player plays turns 1 and 3 (steady eighths), rests in turns 2 and 4.
    human = line(start, scale_walk(16, 5), BEAT / 2) + line(start + 2 * turn, scale_walk(16, 6), BEAT / 2)
    duet = play_performance(human, fixture_session("trade", trade_bars=bars_per_turn, density=0.8), tail_s=turn + 1)
    ai_turns = [(start + turn, start + 2 * turn), (start + 3 * turn, start + 4 * turn)]
    for lo, hi in ai_turns:
        in_turn = [n for n in duet.ai if lo - 0.06 <= n.onset_s < hi]
        assert in_turn, f"the AI did not take its turn {lo:.2f}-{hi:.2f}"
        assert abs(in_turn[0].onset_s - lo) < 0.06, f"AI turn began at {in_turn[0].onset_s:.3f}, bar line {lo:.3f}"
    stray = [n for n in duet.ai if not any(lo - 0.06 <= n.onset_s < hi for lo, hi in ai_turns)]
    assert not stray, f"AI played in the player's turns: {stray[:3]}"


def _motif_share(kept: list[int], answer: list[int]) -> float:
    """Share of the kept phrase's notes found in place in the answer, under its best transposition
    (an ornament changes one note; a new line matches only by chance)."""
    n = min(len(kept), len(answer))
    if n == 0:
        return 0.0
    shifts = [answer[i] - kept[i] for i in range(n)]
    best = max(set(shifts), key=shifts.count)
    return shifts.count(best) / len(kept)


def test_variation_reuses_the_kept_phrase():
    motif = [72, 76, 79, 83, 81, 77, 74, 71, 72, 79, 76, 72]
    kept = line(1.0, motif, BEAT / 2)
    others = [line(9.0 + 8.0 * k, scale_walk(12, 20 + k), BEAT / 2) for k in range(3)]
    keep_at = kept[-1].onset_s + 2.0

    def answers(mode, keep):
        # echo 0: a plain answer would otherwise open with its own call's motif; the point here
        # is whether answers reuse the *kept* phrase.
        session = fixture_session(mode, seed=3, echo=0.0)
        keep_cc = [(keep_at, (0xB0, 80, 127))] if keep else []
        duet = play_performance(kept + [n for o in others for n in o], session, extra_messages=keep_cc)
        shares = []
        for o in others:
            end = o[-1].onset_s + o[-1].duration_s
            pitches = [n.pitch for n in duet.ai if end < n.onset_s < end + 4.0]
            shares.append(_motif_share(motif, pitches))
        return shares, session

    varied, session = answers("variation", keep=True)
    assert session.kept_phrase is not None and [n.pitch for n in session.kept_phrase.notes] == motif
    plain, _ = answers("call-response", keep=False)
    assert min(varied) >= 0.6, f"variations do not reuse the kept motif: {varied}"
    assert max(plain) < 0.4, f"plain answers should not copy the motif: {plain}"


def test_same_seed_same_duet_and_another_seed_another():
    human, _ = phrases_with_rests(3, bars_each=1, rest_bars=2)

    def ai_notes(seed):
        return play_performance(human, fixture_session("call-response", seed=seed)).ai

    assert ai_notes(7) == ai_notes(7)
    assert ai_notes(7) != ai_notes(8)


def test_temperature_and_density_controls_change_what_is_played():
    human, _ = phrases_with_rests(3, bars_each=2, rest_bars=3)
    sparse = play_performance(human, fixture_session("call-response", density=0.0, seed=1)).ai
    busy = play_performance(human, fixture_session("call-response", density=1.0, seed=1)).ai
    assert len(busy) > 1.3 * len(sparse), (len(sparse), len(busy))


def test_sustain_pedal_and_unfinished_notes_do_not_confuse_the_session():
    chord = [Note(1.0, p, 70, 0.3) for p in (48, 55, 64, 71)]
    events = chord + [Pedal(0.95, True), Pedal(3.0, False)] + line(4.0, scale_walk(8, 9), BEAT / 2)
    duet = play_performance(events, fixture_session("call-response"))
    assert duet.summary()["phrases_heard"] == 2
    assert duet.summary()["ai_onsets_during_human_notes"] == 0


@pytest.mark.parametrize("mode", ["call-response", "comp", "trade", "duet", "variation"])
def test_every_mode_runs_and_leaves_nothing_sounding(mode):
    human, _ = phrases_with_rests(3, bars_each=2, rest_bars=2)
    duet = play_performance(human, fixture_session(mode))
    assert all(n.duration_s >= 0 for n in duet.ai)
    assert duet.summary()["mode"] == mode


def test_the_style_blend_control_moves_the_answers_between_two_styles():
    """Two styles trained on different material: the blend control decides whose lines come out."""
    from music_fixtures import line as make_line
    from sideman.controls import CONTROLS
    from sideman.model import events as ev
    from sideman.play.improviser import MarkovImproviser
    from sideman.play.session import Session
    from sideman_train.markov_fit import fit_markov

    low = fit_markov([ev.encode(make_line(0, scale_walk(64, k, 40, 60), 0.25)) for k in range(8)], "low", 3)
    high = fit_markov([ev.encode(make_line(0, scale_walk(64, k, 76, 96), 0.25)) for k in range(8)], "high", 3)
    human, _ = phrases_with_rests(3, bars_each=2, rest_bars=3)

    def mean_pitch(blend):
        controls = {c.name: c.default for c in CONTROLS}
        controls.update(style_blend=blend, register_shift=0)
        session = Session(MarkovImproviser({"low": low, "high": high}), controls=controls, styles=("low", "high"))
        session.register_around = lambda notes: (36, 100)   # let each style play where it lives
        ai = play_performance(human, session).ai
        return sum(n.pitch for n in ai) / len(ai)

    at_low, middle, at_high = mean_pitch(0.0), mean_pitch(0.5), mean_pitch(1.0)
    assert at_low < middle < at_high and at_high - at_low > 15, (at_low, middle, at_high)


def test_the_session_log_keeps_the_newest_phrases_and_answers_only():
    """A box left on for days: the log (read by evaluation and status) does not grow without bound."""
    from sideman.play.session import LOG_KEEP, AnswerLog, SessionLog

    log = SessionLog()
    for i in range(LOG_KEEP + 10):
        log.answers.append(AnswerLog(kind="answer", decided_s=float(i), start_s=float(i)))
    assert len(log.answers) == LOG_KEEP
    assert log.answers[0].decided_s == 10.0 and log.answers[-1].decided_s == LOG_KEEP + 9


def test_the_panel_talks_to_a_listening_session_and_only_shows_the_plain_voices():
    """contracts.as_partner: a Session is the panel's partner, the echo and silent voices are not,
    and the check runs none of the session's properties (the engine thread asks every 2 s)."""
    from sideman.model.echo import EchoVoice, SilentVoice
    from sideman.play.contracts import as_partner

    class CountingSession(Session):
        looked = 0

        @property
        def improviser_status(self):
            CountingSession.looked += 1
            return super().improviser_status

    session = CountingSession(MarkovImproviser(fixture_markov()))
    assert as_partner(session) is session
    assert as_partner(EchoVoice()) is None and as_partner(SilentVoice()) is None
    assert CountingSession.looked == 0
    assert session.improviser_status["voice"] == "markov" and CountingSession.looked == 1
