"""A partner who listens: waits out your breaths, answers after your phrase, develops your motif,
plays with two hands on a pulse. Through the live session code on a simulated clock, with the
shipped Markov tables (no corpus needed); the last test runs `sideman-train eval-answers` on the
real calls when ../shared/data is there."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest

from music_fixtures import line
from sideman.controls import defaults
from sideman.model.events import Note
from sideman.play.motifs import cell_pitches, develop_call, interval_cells, line_pitch_to_keep_on_top, top_line
from sideman.play.simulate import play_performance
from sideman.play.voices import make_session
from sideman_train.answer_measures import interval_bigrams, jaccard, notes_per_second

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A bebop-ish call at 150 BPM (eighths of 0.2 s) with a 0.55 s breath (every key up) in the middle.
EIGHTH = 0.2
FIRST_HALF = line(1.0, [67, 69, 71, 72, 74, 72, 71, 69], EIGHTH, 0.16)
BREATH_AT = FIRST_HALF[-1].onset_s + FIRST_HALF[-1].duration_s
SECOND_HALF = line(BREATH_AT + 0.55, [67, 71, 74, 77, 76, 74, 72, 71], EIGHTH, 0.16)
CALL = FIRST_HALF + SECOND_HALF
CALL_END = SECOND_HALF[-1].onset_s + SECOND_HALF[-1].duration_s


def _duet(notes, seed=1, **controls):
    values = defaults()
    values.update(controls)
    return play_performance(list(notes), make_session(controls=values, seed=seed), tail_s=5.0)


def test_a_breath_inside_a_phrase_never_triggers_an_answer_and_an_impatient_box_would_have():
    inside = lambda duet: [n for n in duet.ai if CALL[0].onset_s + 0.1 < n.onset_s < CALL_END]  # noqa: E731
    for seed in (1, 2, 3):
        assert inside(_duet(CALL, seed)) == []
    # The same breath with patience 0 (a 0.51 s silence ends a phrase this short): the box does
    # cut in, so the test above could have failed.
    assert inside(_duet(CALL, 1, patience=0.0))


def test_a_real_phrase_end_is_answered_within_the_patience_gap():
    from sideman.listen.phrases import BREATH_WAIT_S, QUICKEST_GAP_S, phrase_end_gap_s
    gaps = []
    for patience in (0.5, 1.0):
        silence = phrase_end_gap_s(patience, CALL_END - CALL[0].onset_s)
        duet = _duet(CALL, 1, patience=patience)
        answer = [n for n in duet.ai if n.onset_s >= CALL_END]
        assert answer, "the call was not answered"
        gap = answer[0].onset_s - CALL_END
        # The silence (sooner when the voice hears the end, later when it hears a breath), then at
        # most the wait for the beat grid (0.15 s) and one engine tick.
        ended_by_cue = duet.session.listener.phrases.ended_by_cue
        low = QUICKEST_GAP_S if ended_by_cue else silence
        assert low - 0.01 <= gap <= silence + BREATH_WAIT_S + 0.15 + 0.01
        gaps.append(gap)
    assert gaps[1] >= gaps[0] - 0.01, "more patience never answers sooner"


def test_with_echo_up_the_answer_restates_the_calls_last_motif():
    call_grams = interval_bigrams(CALL)
    motif_contour = _signs([n.pitch for n in top_line(CALL)[-6:]])
    overlaps = {}
    for echo in (0.0, 1.0):
        shares = []
        for seed in (1, 2, 3, 4):
            duet = _duet(CALL, seed, echo=echo)
            answer = [n for n in duet.ai if n.onset_s >= CALL_END]
            shares.append(jaccard(call_grams, interval_bigrams(answer)))
            if echo == 1.0:
                heard = _signs([n.pitch for n in top_line(answer)])
                # The motif's contour, in a row, somewhere near the answer's start.
                assert any(heard[i:i + 5] in (motif_contour, [-x for x in motif_contour]) for i in range(0, 8)), \
                    (heard[:12], motif_contour)
        overlaps[echo] = sum(shares) / len(shares)
    assert overlaps[1.0] > 2 * overlaps[0.0]


def test_interval_cells_are_the_calls_leaps_and_turns_and_cell_pitches_complete_them():
    # CALL's line: up a scale, down, then a broken chord (67 71 74 77) and down by steps.
    cells = interval_cells(CALL)
    assert (4, 3) in cells and (3, 3) in cells and (3, -1) in cells
    assert (2, 2) not in cells and (-1, -2) not in cells     # scale runs are every line's
    assert cell_pitches([60, 64], cells) == [67]             # after a major third up, the minor third
    assert cell_pitches([60, 61], frozenset({(1, 5), (1, -7), (2, 3)})) == [54, 66]
    assert cell_pitches([64], cells) == [] and cell_pitches([60, 64], frozenset()) == []


def test_a_chord_struck_with_the_note_that_completes_a_cell_goes_under_it():
    cells = frozenset({(4, 3)})
    played = [Note(0.0, 60, 80, 0.2), Note(0.2, 64, 80, 0.2), Note(0.4, 67, 80, 0.2)]   # 60 64 67: the cell
    assert line_pitch_to_keep_on_top(played, cells) == 67
    assert line_pitch_to_keep_on_top(played + [Note(0.41, 55, 80, 0.2)], cells) == 67   # the chord under it
    assert line_pitch_to_keep_on_top(played[:2] + [Note(0.4, 66, 80, 0.2)], cells) is None
    assert line_pitch_to_keep_on_top(played, frozenset()) is None


def _signs(pitches):
    return [(b > a) - (b < a) for a, b in zip(pitches, pitches[1:])]


def test_develop_call_keeps_the_motifs_rhythm_and_contour_in_the_key_and_is_the_same_for_the_same_call():
    register = (55, 83)
    c_major = frozenset((0, 2, 4, 5, 7, 9, 11))   # the call is in C (its F is natural)
    motif = top_line(CALL)[-5:]
    original = [n.pitch for n in motif]
    for seed in range(12):
        a = develop_call(CALL, 0.5, register, seed, c_major)
        assert a == develop_call(CALL, 0.5, register, seed, c_major) and len(a) == 5   # echo 0.5: five notes, once
        assert [round(n.onset_s - a[0].onset_s, 6) for n in a] == [round(n.onset_s - motif[0].onset_s, 6) for n in motif]
        pitches = [n.pitch for n in a]
        assert _signs(pitches) in (_signs(original), [-s for s in _signs(original)])
        assert pitches != original and all(p % 12 in c_major for p in pitches)
        # No key heard: a real transposition, every interval kept (or mirrored).
        plain = [n.pitch for n in develop_call(CALL, 0.5, register, seed)]
        steps, kept = [b - a for a, b in zip(plain, plain[1:])], [b - a for a, b in zip(original, original[1:])]
        assert steps in (kept, [-s for s in kept])
    assert len(develop_call(CALL, 1.0, register, 3, c_major)) == 12    # echo 1: six notes, twice
    assert develop_call(CALL, 0.0, register, 7, c_major) == ()


def test_the_density_control_moves_notes_per_second():
    rates = {}
    for density in (0.1, 0.9):
        per_seed = []
        for seed in (1, 2, 3):
            duet = _duet(CALL, seed, density=density, echo=0.0, left_hand=0.0)
            answer = [n for n in duet.ai if n.onset_s >= CALL_END]
            per_seed.append(notes_per_second(answer))
        rates[density] = sum(per_seed) / len(per_seed)
    assert rates[0.9] > 1.5 * rates[0.1], rates


def test_an_answer_has_a_left_hand_below_the_call_unless_the_control_leaves_it_out():
    call_low = min(n.pitch for n in CALL)
    with_left = [n for seed in (1, 2) for n in _duet(CALL, seed, left_hand=0.5).ai if n.onset_s >= CALL_END]
    assert min(n.pitch for n in with_left) < 48 <= call_low - 12
    without = [n for seed in (1, 2) for n in _duet(CALL, seed, left_hand=0.0).ai if n.onset_s >= CALL_END]
    assert without and min(n.pitch for n in without) > min(n.pitch for n in with_left) + 6


def test_answer_onsets_sit_on_an_eighth_note_pulse():
    duet = _duet(CALL, 1)
    answer = sorted(n.onset_s for n in duet.ai if n.onset_s >= CALL_END)
    beat = duet.session.listener.beats.estimate(answer[0]).period_s
    offsets = [(t - answer[0]) / (beat / 2) for t in answer]
    on_grid = sum(abs(x - round(x)) < 0.05 for x in offsets) / len(offsets)
    assert on_grid > 0.8


def test_the_pulse_never_moves_a_note_past_the_answers_end():
    """A trade turn ends at a bar line: a note just before it must not be pulled over it (the
    hush at the bar line would cut it to nothing)."""
    from types import SimpleNamespace

    from sideman.listen.tempo import BeatEstimate
    from sideman.play.note_stream import PeekableNotes
    from sideman.play.request import ANSWER, PlayRequest
    from sideman.play.texture import Answer

    state = SimpleNamespace(beat=BeatEstimate(120.0, 0.5, 0.0, 1.0))
    request = PlayRequest(ANSWER, 0.0, 1.0, (48, 84))
    notes = [Note(0.0, 60, 80, 0.2), Note(0.6, 62, 80, 0.2), Note(0.99, 64, 80, 0.2)]
    answer = Answer(PeekableNotes(iter(notes)), request, lambda: state, [])
    onsets = []
    while answer.peek() is not None:
        onsets.append(answer.pop().onset_s)
    assert onsets == [0.0, 0.5, 0.75]   # on eighths; the last one pulled back, not over the end


def _write_solo(path: Path, notes: list[Note]) -> None:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    events = sorted([(n.onset_s, 1, n.pitch, n.velocity) for n in notes] +
                    [(n.onset_s + n.duration_s, 0, n.pitch, 0) for n in notes])
    now = 0
    for t, on, pitch, velocity in events:
        tick = int(round(t * 960))   # 120 BPM: 960 ticks a second
        track.append(mido.Message("note_on" if on else "note_off", note=pitch, velocity=velocity, time=tick - now))
        now = tick
    midi.save(str(path))


def test_eval_answers_reports_the_measures_on_a_folder_of_calls(tmp_path, capsys):
    from sideman_train.cli import main

    for k in range(3):   # solos with two 2-second phrases each, 1.3 s of silence between
        first = line(0.5, [60 + k, 62 + k, 64 + k, 65 + k, 67 + k, 65 + k, 64 + k, 62 + k], 0.25)
        second = line(first[-1].onset_s + 1.5, [72, 71, 69, 67, 65, 64, 62, 60], 0.25)
        _write_solo(tmp_path / f"solo{k}.mid", first + second)
    out = tmp_path / "report"
    assert main(["eval-answers", "--wjazzd", str(tmp_path), "--voices", "markov", "--timers", "0.35",
                 "--seeds", "1", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["sets"]["wjazzd_horn_calls"]
    assert set(rows) == {"markov", "silence_timer_0.35s"}
    ours = rows["markov"]
    assert ours["calls"] == 6 and ours["share_answered"] == 1.0
    assert ours["share_of_calls_with_ai_onsets_inside"] == 0.0
    assert 0.8 <= ours["median_response_gap_s"] <= 0.81 + 0.15 + 0.01   # 2 s phrases: the short-phrase silence
    assert (out / "answers.json").is_file() and (out / "wjazzd_horn_calls-markov.png").stat().st_size > 1000


@pytest.mark.skipif(not (DATA / "wjazzd").is_dir(), reason="needs ../shared/data/wjazzd")
def test_on_real_horn_calls_the_box_cuts_in_less_than_a_short_silence_timer_and_develops_the_call():
    from sideman_train.calls import horn_calls
    from sideman_train.eval_answers import evaluate, spread

    calls = spread(horn_calls(DATA / "wjazzd"), 12)
    report = evaluate({"horn": calls}, ("markov",), seeds=1, timers=(0.35,))["sets"]["horn"]
    ours, timer = report["markov"], report["silence_timer_0.35s"]
    assert ours["share_answered"] == 1.0
    assert ours["share_of_calls_with_ai_onsets_inside"] < timer["share_of_calls_with_ai_onsets_inside"]
    assert ours["interval_bigram_reuse"]["times_chance"] >= 2.0   # the voice alone: ~1x (README)
    assert ours["median_lowest_note"] <= 48                         # the voice alone: ~52


def _eighths(start_s: float, seconds: float, low: int) -> list[Note]:
    return line(start_s, [low + (0, 2, 4, 5, 7, 5, 4, 2)[i % 8] for i in range(round(seconds / 0.2))], 0.2, 0.16)


def _solos(folder: Path, phrases) -> None:
    """30 solos (eighths at 150 BPM), phrases split by 1 s rests; phrases(k) gives solo k's
    phrases as (seconds before a 0.62 s breath, or None for no breath; seconds after it)."""
    for k in range(30):
        notes, t = [], 0.5
        for before_s, after_s in phrases(k):
            if before_s is not None:
                part = _eighths(t, before_s, 60 + k % 5)
                notes += part
                t = part[-1].onset_s + 0.16 + 0.62
            part = _eighths(t, after_s, 62)
            notes += part
            t = part[-1].onset_s + 0.16 + 1.0
        _write_solo(folder / f"solo{k:02d}.mid", notes)


def test_phrase_end_cues_finds_the_length_rule_where_breaths_come_early_and_not_where_ends_come_as_soon(
        tmp_path, capsys):
    """The check behind the shipped constants (`sideman-train phrase-end-cues`): where breaths of
    0.62 s come 1.2 s into 4.8 s phrases, a rule that waits longer only in short phrases answers
    sooner than the timer that never cuts in, and cuts into none of the val calls, where the 0.6 s
    timer cuts into every one; where two players in three end their phrases 2.4 s in and the third
    breathes there, no rule answers sooner than that timer, and no rule on the phrase's length
    can answer half the calls at 0.55 s without cutting in."""
    from sideman_train.cli import main
    from sideman_train.corpus import hash_split
    assert any(hash_split(f"solo{k:02d}.mid") == "val" for k in range(30))
    found = {}
    players = {"early": lambda k: [(1.2, 3.6)] * 6,
               "as_soon": lambda k: [(2.4, 2.4) if k % 3 == 0 else (None, 2.4)] * 6}
    for name, phrases in players.items():
        folder = tmp_path / name
        folder.mkdir()
        _solos(folder, phrases)
        assert main(["phrase-end-cues", str(folder)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["train"]["silence_timer"]["0.6s"]["share_cut_into"] > 0.3
        assert report["train"]["silence_timer"]["0.65s"]["share_cut_into"] == 0.0
        found[name] = report
    early = found["early"]
    assert early["val"]["silence_timer"]["0.6s"]["share_cut_into"] == 1.0
    assert 1.2 < early["chosen_on_train"]["sure_phrase_s"] <= 5.3   # past the breaths, up to the ends
    assert early["val"]["chosen_rule"]["share_cut_into"] == 0.0
    assert early["val"]["chosen_rule"]["median_gap_s"] < 0.6
    assert found["as_soon"]["chosen_on_train"]["median_gap_s"] >= 0.62   # no quicker than a timer past the breath
    assert early["train"]["length_ceiling"]["0.55s"]["answered_at_fire_s"] == 1.0
    as_soon = found["as_soon"]["train"]["length_ceiling"]["0.55s"]
    assert 0.2 < as_soon["answered_at_fire_s"] < 0.5 and as_soon["long_s"] > 2.4   # only the long lines


def test_the_box_waits_longer_after_a_short_phrase_than_after_a_long_line():
    """The shipped rule itself (PhraseListener at the default patience): a 0.65 s breath 1 s into a
    line is waited out, though a long line's end is answered after 0.61 s of silence."""
    from sideman.listen.phrases import PhraseListener
    from sideman_train.calls import Call
    from sideman_train.phrase_end_cues import listener_on_call

    short = line(1.0, [60, 62, 64, 65, 67], 0.2, 0.16)                       # 0.96 s
    back = short[-1].onset_s + 0.16 + 0.65
    rest_of_line = line(back, [65, 64, 62, 60, 62, 64, 65, 67, 69, 67, 65, 64, 62, 60], 0.2, 0.16)
    cut_into, gap = listener_on_call(Call("line", tuple(short + rest_of_line)))
    assert not cut_into, "the breath was taken for an end"
    assert gap == pytest.approx(0.61, abs=0.006)                             # 4.4 s: a long line
    cut_into, gap = listener_on_call(Call("short", tuple(short)))
    assert not cut_into and gap == pytest.approx(0.81, abs=0.006)            # alone, it is a short phrase
    # a plain 0.6 s timer takes the same breath for an end
    timer = PhraseListener(fixed_gap_s=0.6)
    for n in short:
        timer.note_on(n.onset_s, n.pitch, 80)
        timer.note_off(n.onset_s + n.duration_s, n.pitch)
    assert timer.check_end(short[-1].onset_s + 0.16 + 0.61) is not None


# --- the voice's turn cue -------------------------------------------------------------------------

def _phrase_ending_at(listener, release_s: float) -> None:
    listener.note_on(release_s - 0.5, 60, 80)
    listener.note_off(release_s, 60)


def _end_time(cue, patience: float = 0.5) -> float | None:
    """When a PhraseListener with this turn cue ends a phrase released at 1.0 s (ticks of 5 ms)."""
    from sideman.listen.phrases import PhraseListener
    listener = PhraseListener(patience=patience, turn_cue=cue)
    _phrase_ending_at(listener, 1.0)
    for k in range(1, 400):
        t = 1.0 + 0.005 * k
        if listener.check_end(t) is not None:
            return round(t - 1.0, 3)
    return None


def test_the_voices_turn_cue_ends_a_sure_phrase_end_early_and_waits_out_a_breath_it_hears():
    from sideman.listen.phrases import BREATH_WAIT_S, QUICKEST_GAP_S, phrase_end_gap_s
    silence = phrase_end_gap_s(0.5, 0.5)          # the phrase: one note of 0.5 s
    assert _end_time(None) == pytest.approx(silence, abs=0.006)              # no voice opinion: the silence
    assert _end_time(lambda t, within: None) == pytest.approx(silence, abs=0.006)
    assert _end_time(lambda t, within: 0.01) == pytest.approx(QUICKEST_GAP_S, abs=0.006)   # "they are done"
    assert _end_time(lambda t, within: 0.95) == pytest.approx(silence + BREATH_WAIT_S, abs=0.006)  # "a breath"
    assert _end_time(lambda t, within: 0.4) == pytest.approx(silence, abs=0.006)    # unsure: the silence
    # the cue is read only once the quickest silence has passed, and a timer baseline ignores it
    asked = []
    _end_time(lambda t, within: asked.append(t - 1.0) or 0.4)
    assert asked and min(asked) >= QUICKEST_GAP_S - 1e-9
    from sideman.listen.phrases import PhraseListener
    timer = PhraseListener(fixed_gap_s=0.25, turn_cue=lambda t, within: 0.99)
    _phrase_ending_at(timer, 1.0)
    assert timer.check_end(1.26) is not None


def test_patience_makes_the_turn_cue_more_or_less_eager():
    from sideman.listen.phrases import end_below
    assert end_below(0.0) > end_below(0.5) > end_below(1.0)
    chance = (end_below(0.0) + end_below(1.0)) / 2
    assert _end_time(lambda t, within: chance, patience=0.0) < 0.35      # impatient: ends on the cue
    assert _end_time(lambda t, within: chance, patience=1.0) > 0.85      # patient: waits the silence


def test_return_chance_reads_the_models_next_gap_as_a_turn():
    import numpy as np
    from sideman.model.events import TIME_BINS_S
    from sideman.model.turns import return_chance, survival
    quick = np.full(len(TIME_BINS_S), -30.0)
    quick[TIME_BINS_S.index(0.25)] = 0.0            # "the next note comes a quarter second after the last"
    assert survival(quick, 0.0) == pytest.approx(1.0)
    assert return_chance(quick, 0.1, 0.5) == pytest.approx(1.0, abs=1e-6)
    assert return_chance(quick, 1.0, 0.5) == 0.0      # long overdue: the model expected them long ago
    late = np.full(len(TIME_BINS_S), -30.0)
    late[-1] = 0.0                                    # "nothing for seconds": a phrase end
    assert return_chance(late, 0.5, 0.5) < 1e-6
    both = np.full(len(TIME_BINS_S), -30.0)
    both[TIME_BINS_S.index(0.7)] = both[-1] = 0.0     # half a breath of 0.7 s, half an end
    assert return_chance(both, 0.4, 0.5) == pytest.approx(0.5, abs=0.01)
    assert return_chance(both, 0.9, 0.5) < 0.01       # past the breath: it has ended


def test_turn_cues_judges_a_rule_against_the_silence_timers_on_the_same_rests():
    """The offline judge behind `sideman-train turn-cues`: calls whose breaths (0.65 s) the voice
    hears as breaths (a high return chance) and whose ends it hears as ends (a low one) get a rule
    that answers sooner than the 0.7 s timer and cuts into none, where a 0.6 s timer cuts into
    every call; with a cue that cannot tell them apart, no such rule is found."""
    import numpy as np
    from sideman_train.turn_cues import SILENCES_S, below_the_curve, choose, judge, timer_curve

    def rests(breath_chance, end_chance):
        trace = lambda chance, length: np.where(SILENCES_S < length, chance, np.nan)  # noqa: E731
        return [(0.65, trace(breath_chance, 0.65), 1.0), (float("inf"), trace(end_chance, np.inf), 3.0)]

    telling = [rests(0.9, 0.02) for _ in range(50)]
    timers = timer_curve(telling)
    assert timers["0.6s"]["share_cut_into"] == 1.0 and timers["0.7s"]["share_cut_into"] == 0.0
    rule = choose(telling)
    assert rule["share_cut_into"] == 0.0 and rule["median_gap_s"] < 0.4
    assert below_the_curve(rule, timers) and not below_the_curve(timers["0.8s"], timers)
    blind = [rests(0.3, 0.3) for _ in range(50)]
    assert choose(blind) == {} or choose(blind)["median_gap_s"] >= 0.7
    assert judge(blind, lambda chances, phrase_s: 0.6)["share_cut_into"] == 1.0


def test_the_session_asks_its_voice_for_the_turn_cue_only_when_the_cue_is_on(monkeypatch):
    """Off (what ships: the cue does not beat the silence timer yet) a sure "they are done" from
    the voice changes nothing; on, the same voice ends the phrase at the quickest silence."""
    import sideman.play.session as session_module
    from sideman.listen.phrases import QUICKEST_GAP_S, phrase_end_gap_s

    def end_after(on: bool) -> float:
        monkeypatch.setattr(session_module, "VOICE_CUE_ON", on)
        session = make_session(controls=defaults(), seed=1)
        session.improviser.player_returns = lambda t_s, within_s: 0.01
        duet = play_performance(list(SECOND_HALF), session, tail_s=2.0)
        phrase = duet.session.log.phrases[0]
        answer = duet.session.log.answers[0]
        return answer.decided_s - phrase.end_s

    phrase_s = SECOND_HALF[-1].onset_s + SECOND_HALF[-1].duration_s - SECOND_HALF[0].onset_s
    assert end_after(False) == pytest.approx(phrase_end_gap_s(0.5, phrase_s), abs=0.011)
    assert end_after(True) == pytest.approx(QUICKEST_GAP_S, abs=0.011)
