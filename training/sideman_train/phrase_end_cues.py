"""`sideman-train phrase-end-cues FOLDER`: the box's phrase-end rule against the silence timer's
curve (`../shared/docs/MUSICIANSHIP.md`, *Turn-taking*), and the choice of its three numbers.

Every horn call of the folder (calls.horn_calls: the first and the middle phrase of each file, as
`eval-answers` takes them) is split into its rests: the breaths inside it (shorter than 0.7 s) and
its end. For each rest the listener knows how long the phrase has lasted when the keys went up.
The rule (phrases.phrase_end_gap_s): after a phrase of at least `sure_phrase_s`, the phrase ends
after `quick_s` of silence; after one of `short_phrase_s` or less, after `quick_s` +
phrases.SHORT_PHRASE_WAIT_S; in between, a share of that wait. A call is *cut into* when the rule's
silence is not longer than one of its breaths; its response gap is the rule's silence at its end.

The three are chosen on the train-split calls (path hash, corpus.hash_split): the quickest (see
`choose`) with at most MAX_CUT_SHARE of them cut into. The report judges the choice on the val
calls and on the 40 calls `eval-answers` plays (spread over the files, train and val), each beside
silence timers, and plays the call sets into the shipped `PhraseListener` itself (phrases.py's
constants, patience 0.5, ticks of 5 ms) to show what the box does.

It also shows how far any rule on the phrase's length can go (`length_ceiling`): the largest share
of calls answered after FIRE_S of silence with at most MAX_CUT_SHARE cut into, where the rest wait
calls.HORN_REST_S (no breath is that long, by the calls' definition). Under half means no length
rule has a median gap of FIRE_S at that cut share.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from sideman.listen.phrases import SHORT_PHRASE_WAIT_S, PhraseListener, short_phrase_wait_s
from sideman.paths import write_atomically
from sideman_train.calls import HORN_REST_S, Call, horn_calls, rests_of
from sideman_train.corpus import hash_split
from sideman_train.eval_answers import spread

TIMERS_S = (0.25, 0.35, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)
QUICK_GRID_S = tuple(np.round(np.arange(0.45, 0.701, 0.01), 3))
SHORT_PHRASE_GRID_S = (1.0, 1.5, 2.0, 2.5, 3.0)
SURE_PHRASE_GRID_S = (2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)
MAX_CUT_SHARE = 0.02
ANSWERED_SHARE = 0.6
EVAL_CALLS = 40
FIRE_S = (0.5, 0.55, 0.6)
TICK_S = 0.005


def call_rests(call: Call) -> tuple[list[tuple[float, float]], float]:
    """([(phrase so far, breath length)] for every rest inside the call, the call's length)."""
    rests = rests_of(call.notes)
    return [(so_far, length) for _, length, so_far in rests[:-1]], rests[-1][2]


def judge(calls: list, silence) -> dict:
    """Share of calls cut into and the median response gap for a rule silence(phrase_s) -> s."""
    cut = [any(silence(so_far) <= breath for so_far, breath in breaths) for breaths, _ in calls]
    gaps = [silence(length) for _, length in calls]
    return {"calls": len(calls), "share_cut_into": round(float(np.mean(cut)), 4) if calls else None,
            "median_gap_s": round(statistics.median(gaps), 3) if gaps else None}


def length_rule(quick_s: float, short_phrase_s: float, sure_phrase_s: float):
    return lambda phrase_s: quick_s + short_phrase_wait_s(phrase_s, short_phrase_s, sure_phrase_s)


def choose(calls: list) -> dict:
    """The quickest rule with at most MAX_CUT_SHARE of the calls cut into. Quickest by the gap
    within which ANSWERED_SHARE of the calls are answered: the median with room to spare, since
    the median alone would pick a rule that answers barely half the calls at the quick silence,
    and other players' phrases are a little shorter or longer."""
    best = {}
    for quick in QUICK_GRID_S:
        for short in SHORT_PHRASE_GRID_S:
            for sure in SURE_PHRASE_GRID_S:
                if sure <= short:
                    continue
                rule = length_rule(quick, short, sure)
                result = judge(calls, rule)
                if result["share_cut_into"] > MAX_CUT_SHARE:
                    continue
                answered_by = float(np.percentile([rule(length) for _, length in calls], 100 * ANSWERED_SHARE))
                key = (round(answered_by, 3), result["share_cut_into"], short)
                if not best or key < best["_key"]:
                    best = {"quick_s": float(quick), "short_phrase_s": short, "sure_phrase_s": sure, **result,
                            "answered_by_s": round(answered_by, 3), "_key": key}
    best.pop("_key", None)
    return best


def length_ceiling(calls: list, fire_s: float) -> dict:
    """The rule "after a phrase of at least long_s, fire_s of silence ends it; before, HORN_REST_S"
    with the longest share of calls answered at fire_s and at most MAX_CUT_SHARE cut into. Length
    is the one listener cue that helped (README, Design notes), and a longer phrase is likelier
    over, so a threshold on it is the whole family."""
    best = {"long_s": None, "answered_at_fire_s": 0.0, "share_cut_into": 0.0}
    lengths = sorted({length for _, length in calls})
    for long_s in lengths:
        rule = lambda phrase_s, long_s=long_s: fire_s if phrase_s >= long_s else HORN_REST_S
        result = judge(calls, rule)
        answered = float(np.mean([length >= long_s for _, length in calls]))
        if result["share_cut_into"] <= MAX_CUT_SHARE and answered > best["answered_at_fire_s"]:
            best = {"long_s": round(long_s, 3), "answered_at_fire_s": round(answered, 4),
                    "share_cut_into": result["share_cut_into"]}
    return best


def listener_on_call(call: Call, patience: float = 0.5) -> tuple[bool, float | None]:
    """(was the call cut into, response gap) when the box's PhraseListener hears the call alone."""
    listener = PhraseListener(patience=patience)
    events = sorted([(n.onset_s, 1, n) for n in call.notes] + [(n.onset_s + n.duration_s, 0, n) for n in call.notes],
                    key=lambda e: (e[0], e[1]))
    last_release = call.last_release_s
    t, i = events[0][0], 0
    while t < last_release + 2.0:
        while i < len(events) and events[i][0] <= t:
            at, is_on, note = events[i]
            if is_on:
                listener.note_on(at, note.pitch, note.velocity)
            else:
                listener.note_off(at, note.pitch)
            i += 1
        ended = listener.check_end(t)
        if ended is not None:
            if ended.end_s < last_release - 1e-9:
                return True, None
            return False, round(t - last_release, 3)
        t += TICK_S
    return False, None


def judge_listener(calls: list[Call]) -> dict:
    """As `judge`, for the box's PhraseListener (the gap over the calls it did not cut into)."""
    results = [listener_on_call(c) for c in calls]
    gaps = [gap for _, gap in results if gap is not None]
    return {"calls": len(calls),
            "share_cut_into": round(float(np.mean([cut for cut, _ in results])), 4) if results else None,
            "median_gap_s": round(statistics.median(gaps), 3) if gaps else None}


def run(args) -> int:
    folder = Path(args.folder)
    calls = horn_calls(folder)
    if not calls:
        print(f"sideman-train phrase-end-cues: no horn calls in {folder}", file=sys.stderr)
        return 2
    split = {name: [c for c in calls if hash_split(c.source.split("#")[0]) == name] for name in ("train", "val")}
    split["eval_answers"] = spread(calls, EVAL_CALLS)
    rests = {name: [call_rests(c) for c in group] for name, group in split.items()}
    chosen = choose(rests["train"])
    report = {"command": f"sideman-train phrase-end-cues {folder}",
              "short_phrase_wait_s": SHORT_PHRASE_WAIT_S, "max_cut_share": MAX_CUT_SHARE,
              "chosen_on_train": chosen}
    for name, group in rests.items():
        report[name] = {
            "silence_timer": {f"{t}s": judge(group, lambda _, t=t: t) for t in TIMERS_S},
            "chosen_rule": judge(group, length_rule(chosen["quick_s"], chosen["short_phrase_s"],
                                                    chosen["sure_phrase_s"])) if chosen else None,
            "shipped_listener": judge_listener(split[name]),
            "length_ceiling": {f"{f}s": length_ceiling(group, f) for f in FIRE_S}}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        write_atomically(Path(args.out), (text + "\n").encode())
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("phrase-end-cues",
                            help="choose the phrase-end rule on horn calls and judge it against silence timers")
    p.add_argument("folder", help="a folder of monophonic solos, e.g. ../shared/data/wjazzd")
    p.add_argument("--out", help="also write the report (JSON) here")
    p.set_defaults(run=run)
