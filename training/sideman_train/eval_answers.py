"""`sideman-train eval-answers`: MUSICIANSHIP.md's measures on calls, through the live session code.

Each call is played alone, followed by silence, into a fresh call-and-response session (`sideman
play`'s simulation: the same Session and voices the box runs, on a simulated clock). The AI's notes
after the call's last key release are its answer. Reported side by side, medians over calls and
seeds:
- each voice asked for (the transformer and the Markov voice), with the box's phrase-end rule;
- silence timers (the Markov voice, answering the moment the silence has lasted so long): the
  turn-taking curve that any phrase-end rule is judged against;
- the reference: Mehldau's own next phrase, for the PiJAMA pairs (val; `--pijama-split train` for
  the pairs the answer density is calibrated on: live_transformer.ANSWER_DENSITY_NATS).

Output: JSON on stdout (and in --out), and piano rolls of the first calls per set in --out.
"""

from __future__ import annotations

import json
import sys
import statistics
from pathlib import Path

import numpy as np

from sideman.model.model_files import ModelFileError
from sideman.paths import models_dir, write_atomically
from sideman_bench.response_gaps import call_response_session
from sideman.play.session import Session
from sideman.play.simulate import play_performance
from sideman.play.voices import TRANSFORMER_DIR, load_styles, open_model
from sideman_train.answer_measures import bigram_reuse, measure_answer
from sideman_train.calls import Call, horn_calls, mehldau_files, piano_pairs

ANSWER_TAIL_S = 6.0          # how long the session listens on after a call
INSIDE_GRACE_S = 0.1         # an AI onset in a call's first 0.1 s is not "inside" it
TIMERS_S = (0.25, 0.35, 0.5, 0.6, 0.8)
PER_ANSWER = ("notes_per_second", "pulse_share", "lowest_note", "share_below_48", "in_key_share")


class Voices:
    """The styles and the transformer, loaded once; a fresh session per call."""

    def __init__(self, model_backend: str = "auto", density: float | None = None):
        self.density = density   # the density control (None: its default)
        self.styles, self.problems = load_styles(warn=lambda message: None)
        self.model = None
        try:
            self.model = open_model(models_dir() / TRANSFORMER_DIR, model_backend, warn=lambda message: None)
        except ModelFileError as exc:
            self.problems.append(f"{exc}; no transformer rows")

    def session(self, voice: str, seed: int, timer_s: float | None = None) -> Session:
        session = call_response_session(self.styles, seed, self.model if voice == "transformer" else None, timer_s)
        if self.density is not None:
            session.controls["density"] = self.density
        return session


def play_call(call: Call, session: Session) -> dict:
    """The call into the session; what the AI played inside it and after it."""
    duet = play_performance(list(call.notes), session, tail_s=ANSWER_TAIL_S)
    first, last = call.notes[0].onset_s, call.last_release_s
    inside = [n for n in duet.ai if first + INSIDE_GRACE_S < n.onset_s < last]
    answer = [n for n in duet.ai if n.onset_s >= last]
    return {"inside": len(inside), "inside_notes": inside, "answer": answer,
            "gap_s": answer[0].onset_s - last if answer else None}


def summarize(calls: list[Call], played: list[dict], rng: np.random.Generator) -> dict:
    answered = [p for p in played if p["answer"]]
    rows = [measure_answer(list(c.notes), p["answer"]) for c, p in zip(calls, played) if p["answer"]]
    out = {"calls": len(played),
           "share_of_calls_with_ai_onsets_inside": round(float(np.mean([p["inside"] > 0 for p in played])), 4),
           "share_answered": round(len(answered) / max(1, len(played)), 4),
           "median_response_gap_s": _median([p["gap_s"] for p in answered]),
           "interval_bigram_reuse": bigram_reuse([list(c.notes) for c in calls], [p["answer"] for p in played], rng)}
    for name in PER_ANSWER:
        out[f"median_{name}"] = _median([r[name] for r in rows])
    return out


def reference(calls: list[Call], rng: np.random.Generator) -> dict:
    """The pianist's own next phrases, measured the same way."""
    played = [{"inside": 0, "answer": list(c.reference), "gap_s": c.reference[0].onset_s - c.last_release_s}
              for c in calls]
    result = summarize(calls, played, rng)
    result.pop("share_of_calls_with_ai_onsets_inside")
    return result


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(statistics.median(values)), 3) if values else None


def evaluate(call_sets: dict[str, list[Call]], voices: tuple[str, ...], seeds: int, timers: tuple[float, ...],
             out_dir: Path | None = None, progress: bool = False, density: float | None = None) -> dict:
    loaded = Voices(density=density)
    if "transformer" in voices and loaded.model is None:
        voices = tuple(v for v in voices if v != "transformer")
    report = {"seeds": seeds, "problems": loaded.problems, "sets": {}}
    for set_name, calls in call_sets.items():
        rows = {}
        runs = [(voice, None) for voice in voices] + [("markov", t) for t in timers]
        for voice, timer in runs:
            label = voice if timer is None else f"silence_timer_{timer}s"
            played, repeated = [], []
            for seed in range(seeds):
                iterator = calls
                if progress:
                    from tqdm import tqdm
                    iterator = tqdm(calls, desc=f"{set_name} {label} seed {seed}", unit="call")
                for call in iterator:
                    played.append(play_call(call, loaded.session(voice, seed, timer)))
                    repeated.append(call)
            rows[label] = summarize(repeated, played, np.random.default_rng(0))
            if out_dir is not None and timer is None:
                from sideman_train.piano_rolls import draw_calls
                draw_calls(calls[:6], played[:6], out_dir / f"{set_name}-{voice}.png", f"{set_name}: {voice}")
        if any(c.reference for c in calls):
            rows["reference"] = reference(calls, np.random.default_rng(0))
        report["sets"][set_name] = rows
    return report


def spread(calls: list[Call], limit: int | None, offsets: tuple[int, ...] = (0,)) -> list[Call]:
    """limit calls spread evenly over the list (every file's turn), not the first few files.
    Each offset shifts the picks that many calls on (offset 0: the shared calls the README's
    figures are on; others: calls for choosing a constant without looking at those)."""
    if limit is None or len(calls) <= limit:
        return calls
    picks = np.linspace(0, len(calls) - 1, limit).round().astype(int)
    return [calls[(i + offset) % len(calls)] for offset in offsets for i in picks]


def run(args) -> int:
    sets = {}
    offsets = tuple(int(k) for k in args.offsets.split(",") if k.strip()) or (0,)
    if args.wjazzd:
        sets["wjazzd_horn_calls"] = spread(horn_calls(Path(args.wjazzd)), args.limit, offsets)
    if args.pijama:
        files = mehldau_files(Path(args.pijama), split=args.pijama_split)
        sets[f"mehldau_{args.pijama_split}_pairs"] = spread(piano_pairs(files), args.limit, offsets)
    if not sets or not any(sets.values()):
        print("eval-answers: no calls (give --wjazzd and/or --pijama folders that hold MIDI files)")
        return 2
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    timers = tuple(float(t) for t in args.timers.split(",") if t.strip()) if args.timers else ()
    report = evaluate(sets, voices, args.seeds, timers, out_dir, progress=args.progress, density=args.density)
    report["command"] = "sideman-train " + " ".join(sys.argv[1:])
    text = json.dumps(report, indent=2)
    print(text)
    if out_dir is not None:
        write_atomically(out_dir / "answers.json", (text + "\n").encode("utf-8"))
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("eval-answers", help="MUSICIANSHIP.md's measures of the answers to a set of calls")
    p.add_argument("--wjazzd", help="a folder of monophonic solos: horn calls (e.g. ../shared/data/wjazzd)")
    p.add_argument("--pijama", help="the PiJAMA folder (pijama.csv): Mehldau's val pairs and his own answers")
    p.add_argument("--pijama-split", default="val", choices=("val", "train"),
                   help="whose pairs: val (the measure) or train (the density calibration)")
    p.add_argument("--density", type=float, help="the density control, 0-1 (default: its default, 0.5)")
    p.add_argument("--voices", default="transformer,markov", help="comma-separated: transformer, markov")
    p.add_argument("--timers", default=",".join(str(t) for t in TIMERS_S),
                   help="silence timers for the turn-taking curve, in seconds ('' for none)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--limit", type=int, default=40, help="calls per set, spread over the files")
    p.add_argument("--offsets", default="0", help="comma-separated shifts of the spread picks, each adding --limit "
                   "calls (0: the shared calls; e.g. 5,11: other calls, for choosing a constant)")
    p.add_argument("--out", help="a folder for answers.json and the piano rolls")
    p.add_argument("--progress", action="store_true")
    p.set_defaults(run=run)
