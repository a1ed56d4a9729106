"""`sideman-bench gaps DIR`: response gaps of call and response over a folder of phrase files
(e.g. WJazzD solos), through `sideman play`'s simulated session (the transformer by default,
`--voice markov` for the Markov voice), beside a baseline that answers after a fixed 600 ms of
silence the moment it decides (AI Duet's rule).

response gap = the human's last note-off of a phrase -> the AI's first note-on (ARCHITECTURE.md)."""

from __future__ import annotations

import statistics
from pathlib import Path

from sideman_bench.stats import percentile
from sideman.midi_files import MidiFileError, read_performance
from sideman.model.model_files import ModelFileError
from sideman.paths import models_dir
from sideman.play.improviser import MarkovImproviser
from sideman.play.live_transformer import TransformerImproviser
from sideman.play.session import Session
from sideman.play.simulate import play_performance
from sideman.play.voices import TRANSFORMER_DIR, load_styles, open_model

BASELINE_SILENCE_S = 0.6


def call_response_session(styles, seed: int, model=None, timer_s: float | None = None) -> Session:
    """A fresh call-and-response session for one file or call: the Markov voice from the shipped
    tables, or the transformer (model = (bundle, backend), no step budget offline). timer_s: a
    plain silence timer instead of the box's phrase-end rule, answering at once (baselines)."""
    improviser = MarkovImproviser(styles)
    improviser.clear_live()  # each file starts from the shipped tables
    if model is not None:   # the transformer, a fresh context per file (offline: no step budget)
        improviser = TransformerImproviser(model[0], model[1], improviser, step_budget_s=None)
    session = Session(improviser, mode="call-response", seed=seed, answer_on_grid=timer_s is None)
    if timer_s is not None:
        session.listener.phrases.fixed_gap_s = timer_s
    return session


def run_gap_bench(folder: Path, limit: int | None = None, seed: int = 0, progress: bool = False,
                  voice: str = "transformer", model_backend: str = "auto") -> dict:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in (".mid", ".midi"))[:limit]
    styles, problems = load_styles()
    model = None
    if voice == "transformer":
        try:
            model = open_model(models_dir() / TRANSFORMER_DIR, model_backend)
        except ModelFileError as exc:
            problems.append(f"{exc}; the Markov voice answers")
    results = {key: {"ms": [], "beats": [], "interruptions": 0, "phrases": 0, "answers": 0, "ai_notes": 0,
                     "speculation": {"adopted": 0, "missed": 0, "computed": 0}}
               for key in ("ours", "baseline_600ms")}
    skipped = []
    iterator = files
    if progress:
        from tqdm import tqdm
        iterator = tqdm(files, desc="duets", unit="file")
    for path in iterator:
        try:
            human = read_performance(path)
        except MidiFileError as exc:
            skipped.append(str(exc))
            continue
        for key, baseline in (("ours", False), ("baseline_600ms", True)):
            duet = play_performance(human, call_response_session(styles, seed, model,
                                                                 BASELINE_SILENCE_S if baseline else None))
            r = results[key]
            r["phrases"] += len(duet.session.log.phrases)
            r["interruptions"] += duet.ai_onsets_during_human_notes()
            r["ai_notes"] += len(duet.ai)
            for name, count in getattr(duet.session.improviser, "speculation", {}).items():
                r["speculation"][name] += count
            for a in duet.session.log.answers:
                if a.phrase_end_s is not None and a.first_note_s is not None:
                    r["answers"] += 1
                    gap = a.first_note_s - a.phrase_end_s
                    r["ms"].append(gap * 1000)
                    r["beats"].append(gap / a.beat_s)
    report = {"bench": "response gaps", "folder": str(folder), "files": len(files) - len(skipped),
              "voice": f"transformer[{model[1].name}]" if model is not None else "markov",
              "skipped": skipped, "table_problems": problems}
    for key, r in results.items():
        report[key] = {"phrases": r["phrases"], "answers": r["answers"], "ai_notes": r["ai_notes"],
                       "ai_onsets_during_human_notes": r["interruptions"],
                       "gap_ms": _dist(r["ms"]), "gap_beats": _dist(r["beats"]),
                       "share_within_one_beat": round(sum(b <= 1.0 for b in r["beats"]) / len(r["beats"]), 3) if r["beats"] else None}
        if model is not None:   # speculative answers: adopted as sampled when the phrase ended
            report[key]["speculative_answers"] = r["speculation"]
    return report


def _dist(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p10": round(percentile(values, 10), 3), "median": round(statistics.median(values), 3),
            "p90": round(percentile(values, 90), 3), "p99": round(percentile(values, 99), 3)}
