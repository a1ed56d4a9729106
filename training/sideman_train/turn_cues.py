"""`sideman-train turn-cues`: the voice's guess of when the player plays again, as a phrase-end
rule, against the silence timer's curve (`../shared/docs/MUSICIANSHIP.md`, *Turn-taking*).

    sideman-train turn-cues --wjazzd ../shared/data/wjazzd [--model models/transformer] [--out FILE]

Each horn call (calls.horn_calls: rests shorter than 0.7 s inside it are breaths, the rest after it
is its end) is played note by note into a fresh call-and-response session with the transformer
(the box's own code: the voice hears every note and pedal, no answer is played). In every rest the
voice's chance that the player plays again within phrases.TURN_HORIZON_S is read each STEP_S of
silence. A rule then fires at the first silence where it would end the phrase:

    the chance is below `end_below` (once QUICKEST_GAP_S has passed), else the patience silence
    for the phrase so far (phrases.phrase_end_gap_s: 0.61 s after a phrase of 3.5 s or more, up to
    0.81 s after a short one), stretched by BREATH_WAIT_S where the chance at that silence is above
    `breath_above`.

A call is *cut into* when the rule fires inside one of its breaths; its response gap is when the
rule fires after its last release. The thresholds are chosen on the train-split calls (path hash,
corpus.hash_split) as the quickest median gap with at most 2 % of calls cut into; the report gives
train, val and every call set side by side with silence timers on the same calls. Offline: a live
answer also waits for the next eighth of the beat (up to 0.15 s), which `eval-answers` includes.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from sideman.listen.phrases import (BREATH_WAIT_S, LONGEST_GAP_S, QUICKEST_GAP_S, TURN_HORIZON_S,
                                    phrase_end_gap_s)
from sideman.paths import write_atomically
from sideman.play.session import Session
from sideman.play.simulate import performance_messages
from sideman.play.voices import open_model
from sideman_train.calls import Call, horn_calls, rests_of
from sideman_train.corpus import hash_split

STEP_S = 0.025
SILENCES_S = np.round(np.arange(0.0, LONGEST_GAP_S + 1e-9, STEP_S), 3)
TIMERS_S = (0.25, 0.35, 0.5, 0.6, 0.7, 0.8)
END_BELOW_GRID = (0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4)
BREATH_ABOVE_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.01)   # 1.01: never stretch
MAX_CUT_SHARE = 0.02


def rests_of_call(call: Call, session: Session) -> list[tuple[float, np.ndarray, float]]:
    """(rest length in s, inf for the call's end; the voice's chance at each SILENCES_S within it,
    nan where none; the phrase so far in s) for every rest of the call, fed into `session` (hear
    only: nothing is played)."""
    messages = performance_messages(list(call.notes))
    releases = rests_of(call.notes)
    rests = []
    i = 0
    for start, length, phrase_s in releases:
        while i < len(messages) and messages[i][0] <= start:
            session.hear(messages[i][1], int(messages[i][0] * 1e9))
            i += 1
        chances = np.full(SILENCES_S.size, np.nan)
        for k, silence in enumerate(SILENCES_S):
            if silence >= length:
                break
            chance = session.improviser.player_returns(start + silence, TURN_HORIZON_S)
            if chance is not None:
                chances[k] = chance
        rests.append((length, chances, phrase_s))
    return rests


def fire_s(chances: np.ndarray, end_below: float | None, breath_above: float, phrase_s: float,
           patience: float = 0.5) -> float:
    """When the rule ends the phrase in a rest with these chances, after a phrase phrase_s long
    (inf: not within LONGEST_GAP_S)."""
    gap = phrase_end_gap_s(patience, phrase_s)
    if end_below is None:
        return gap
    for silence, chance in zip(SILENCES_S, chances):
        if silence < QUICKEST_GAP_S or np.isnan(chance):
            if silence >= gap:
                return silence
            continue
        if chance < end_below:
            return silence
        limit = min(LONGEST_GAP_S, gap + BREATH_WAIT_S) if chance > breath_above else gap
        if silence >= limit:
            return silence
    return float("inf")


def judge(calls_rests: list[list[tuple[float, np.ndarray]]], fire) -> dict:
    """Share of calls cut into and the median response gap for a rule `fire(chances, phrase_s) -> s`."""
    cut, gaps = [], []
    for rests in calls_rests:
        cut.append(any(fire(chances, so_far) < length for length, chances, so_far in rests if np.isfinite(length)))
        end = [fire(chances, so_far) for length, chances, so_far in rests if not np.isfinite(length)]
        gaps.extend(g for g in end if np.isfinite(g))
    return {"calls": len(calls_rests), "share_cut_into": round(float(np.mean(cut)), 4) if cut else None,
            "median_gap_s": round(statistics.median(gaps), 3) if gaps else None,
            "share_answered": round(len(gaps) / max(1, len(calls_rests)), 4)}


def timer_curve(calls_rests) -> dict:
    return {f"{t}s": judge(calls_rests, lambda chances, phrase_s, t=t: t) for t in TIMERS_S}


def below_the_curve(rule: dict, timers: dict) -> bool:
    """The rule is better than the silence timer: some timer that answers no sooner cuts into more
    calls, and no timer that cuts into as few calls answers as soon (MUSICIANSHIP.md)."""
    cut, gap = rule["share_cut_into"], rule["median_gap_s"]
    if cut is None or gap is None:
        return False
    as_safe = [t for t in timers.values() if t["share_cut_into"] is not None and t["share_cut_into"] <= cut]
    return all(t["median_gap_s"] > gap for t in as_safe)


def choose(calls_rests) -> dict:
    """The quickest (median gap) thresholds with at most MAX_CUT_SHARE of calls cut into."""
    best = None
    for end_below in END_BELOW_GRID:
        for breath_above in BREATH_ABOVE_GRID:
            figures = judge(calls_rests, lambda c, s, e=end_below, b=breath_above: fire_s(c, e, b, s))
            if figures["share_cut_into"] is None or figures["share_cut_into"] > MAX_CUT_SHARE:
                continue
            if figures["median_gap_s"] is None or figures["share_answered"] < 1.0:
                continue
            key = (figures["median_gap_s"], figures["share_cut_into"])
            if best is None or key < best[0]:
                best = (key, {"end_below": end_below, "breath_above": breath_above, **figures})
    return best[1] if best else {}


def collect(calls: list[Call], model, progress: bool = False) -> list:
    from sideman_bench.response_gaps import call_response_session
    from sideman.play.voices import load_styles
    styles, _ = load_styles(warn=lambda message: None)
    iterator = calls
    if progress:
        from tqdm import tqdm
        iterator = tqdm(calls, desc="calls", unit="call")
    return [rests_of_call(call, call_response_session(styles, 0, model)) for call in iterator]


def run(args) -> int:
    calls = horn_calls(Path(args.wjazzd))
    if not calls:
        print(f"turn-cues: no horn calls in {args.wjazzd}")
        return 2
    model = open_model(Path(args.model), args.model_backend, warn=print)
    split = {"train": [], "val": []}
    for call in calls:
        split[hash_split(call.source.split("#")[0])].append(call)
    rests = {name: collect(group, model, args.progress) for name, group in split.items()}
    chosen = choose(rests["train"])
    report = {"command": "sideman-train turn-cues " + " ".join(args.argv), "model": str(args.model),
              "horizon_s": TURN_HORIZON_S, "chosen_on_train": chosen, "sets": {}}
    for name, group in rests.items():
        row = {"timers": timer_curve(group)}
        if chosen:
            row["rule"] = judge(group, lambda c, s: fire_s(c, chosen["end_below"], chosen["breath_above"], s))
            row["rule_below_the_timer_curve"] = below_the_curve(row["rule"], row["timers"])
        row["patience_only"] = judge(group, lambda c, s: fire_s(c, None, 1.01, s))
        report["sets"][name] = row
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        write_atomically(Path(args.out), (text + "\n").encode("utf-8"))
    return 0


def add_commands(commands) -> None:
    import sys
    p = commands.add_parser("turn-cues", help="the voice's turn prediction as a phrase-end rule vs silence timers")
    p.add_argument("--wjazzd", required=True, help="folder of WJazzD solos (horn calls)")
    p.add_argument("--model", default="models/transformer", help="transformer bundle (default: models/transformer)")
    p.add_argument("--model-backend", default="auto", help="auto, torch, onnx")
    p.add_argument("--out", help="also write the JSON report here")
    p.add_argument("--progress", action="store_true")
    p.set_defaults(run=run, argv=sys.argv[2:])
