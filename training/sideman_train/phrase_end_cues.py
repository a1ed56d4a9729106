"""`sideman-train phrase-end-cues FOLDER`: can the listener tell a breath from a phrase end sooner
than a silence timer does? (README, *Design notes*: not with these cues; the box ships the timer.)

Every rest in a solo (every key up, then a new note) is a sample: it ends a phrase when it lasts
HORN_REST_S or more (MUSICIANSHIP.md's horn-call split). At each silence checkpoint the rest
reaches, cues the live listener could know (the beat tracker fed causally, the player's breaths
remembered) predict whether it will be an end: a logistic hazard model fitted on the folder's
train files (hash of the path), then judged on the val files' calls as MUSICIANSHIP.md asks:
the share of calls it would cut into (a breath taken for an end) against the median silence
before it answers the real end, beside the silence timer's curve."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sideman.listen.tempo import BeatTracker
from sideman.midi_files import MidiFileError
from sideman.model.events import Note
from sideman_train.calls import HORN_REST_S, _notes, horn_calls
from sideman_train.corpus import CorpusError, hash_split, list_performances

FIRST_CHECK_S = 0.15
CHECKPOINTS_S = tuple(np.round(np.arange(FIRST_CHECK_S, HORN_REST_S, 0.025), 3))
BREATH_PRIOR_S = 0.3
TIMERS_S = (0.25, 0.35, 0.5, 0.6, 0.7)
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
FEATURES = ("bias", "silence_s", "silence_beats_log", "silence_over_breath_log", "beats_crossed",
            "last_note_beats_log", "phrase_beats_log", "notes_log", "on_beat", "falling", "low_end",
            "softer_end")


@dataclass(frozen=True)
class RestCues:
    """What is known when the last key goes up (everything but how long the rest will last)."""
    beat_s: float
    breath_s: float           # the player's typical rest inside a phrase so far
    release_phase: float      # where the key went up, in beats after the tracked beat (0..1)
    last_note_beats: float
    phrase_beats: float
    notes: int
    on_beat: float            # 1 when the last onset fell on the tracked beat
    falling: float            # 1 when the line fell into its last note
    low_end: float            # 1 when the last note is the phrase's lowest, 0 its highest
    softer_end: float         # last velocity under the phrase's mean, in units of 32

    def features(self, silence_s: float) -> list[float]:
        beats = silence_s / self.beat_s
        return [1.0, silence_s, math.log(beats), math.log(silence_s / self.breath_s),
                min(4, math.floor(self.release_phase + beats)), math.log(max(self.last_note_beats, 0.05)),
                math.log(max(self.phrase_beats, 0.25)), math.log(self.notes), self.on_beat, self.falling,
                self.low_end, self.softer_end]


def rest_cues(phrase: list[Note], phrase_start_s: float, release_s: float, beats: BeatTracker,
              breath_s: float) -> RestCues:
    estimate = beats.estimate(release_s)
    period = estimate.period_s
    last = max(phrase, key=lambda n: (n.onset_s + n.duration_s, n.onset_s))
    before = [n for n in phrase if n.onset_s < last.onset_s - 0.03]
    previous = before[-1] if before else last
    pitches = [n.pitch for n in phrase]
    low, high = min(pitches), max(pitches)
    return RestCues(
        beat_s=period, breath_s=breath_s,
        release_phase=((release_s - estimate.last_beat_s) / period) % 1.0,
        last_note_beats=last.duration_s / period,
        phrase_beats=(release_s - phrase_start_s) / period, notes=len(phrase),
        on_beat=0.5 + 0.5 * math.cos(2 * math.pi * ((last.onset_s - estimate.last_beat_s) / period)),
        falling=float(last.pitch < previous.pitch),
        low_end=(high - last.pitch) / (high - low) if high > low else 0.5,
        softer_end=(float(np.mean([n.velocity for n in phrase])) - last.velocity) / 32.0)


def solo_rests(notes: list[Note]) -> list[tuple[RestCues, float]]:
    """(cues at the rest's start, how long it lasted) for every rest of a solo, in order."""
    beats, breaths = BeatTracker(), deque(maxlen=32)
    rests, phrase, phrase_start, end = [], [], 0.0, 0.0
    for note in notes:
        if phrase and note.onset_s > end:
            rest = note.onset_s - end
            typical = float(np.percentile(breaths, 75)) if len(breaths) >= 3 else BREATH_PRIOR_S
            rests.append((rest_cues(phrase, phrase_start, end, beats, max(0.1, typical)), rest))
            if rest >= HORN_REST_S:
                phrase = []
            elif rest >= 0.05:
                breaths.append(rest)
        if not phrase:
            phrase_start, end = note.onset_s, note.onset_s
        phrase.append(note)
        end = max(end, note.onset_s + note.duration_s)
        beats.onset(note.onset_s, note.velocity, note.pitch)
    return rests


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 30) -> np.ndarray:
    """Newton's method on the L2-penalised log loss, on standardised features; raw weights out."""
    mean, scale = x.mean(0), x.std(0)
    mean[0], scale[0] = 0.0, 1.0
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        w -= np.linalg.solve(hessian, z.T @ (p - y) + penalty * w)
    raw = w / scale
    raw[0] = w[0] - float(np.sum(w[1:] * mean[1:] / scale[1:]))
    return raw


def end_silence(weights: np.ndarray, cues: RestCues, threshold: float) -> float:
    """The silence after which the model calls the rest an end (1 s at the latest)."""
    silence = FIRST_CHECK_S
    while silence < 1.0:
        if 1 / (1 + math.exp(-float(np.dot(weights, cues.features(silence))))) >= threshold:
            return silence
        silence += 0.01
    return 1.0


def tradeoff(calls_rests, decide) -> dict:
    """decide(cues) -> the silence that ends the phrase. A call is cut into when one of its
    breaths lasts longer than that; its real end is answered after it."""
    cut = sum(any(decide(c) < rest for c, rest in rests[:-1]) for rests in calls_rests)
    return {"cut_into_share": round(cut / len(calls_rests), 4),
            "median_end_silence_s": round(statistics.median(decide(rests[-1][0]) for rests in calls_rests), 3)}


def run(args) -> int:
    folder = Path(args.folder)
    try:
        train = [p.path for p in list_performances(folder, split="train", pijama=False)]
    except CorpusError as exc:
        print(f"sideman-train phrase-end-cues: {exc}", file=sys.stderr)
        return 2
    x, y = [], []
    for path in train:
        try:
            rests = solo_rests(_notes(path))
        except MidiFileError:
            continue
        for cues, rest in rests:
            for silence in CHECKPOINTS_S:
                if rest < silence:
                    break
                x.append(cues.features(silence))
                y.append(float(rest >= HORN_REST_S))
    weights = fit_logistic(np.array(x), np.array(y))
    val = [c for c in horn_calls(folder) if hash_split(c.source.split("#")[0]) == "val"]
    # Each call alone, then a long silence: its last rest is its end.
    calls_rests = [solo_rests(list(c.notes) + [Note(c.last_release_s + 5.0, 60, 64, 0.1)]) for c in val]
    report = {"command": f"sideman-train phrase-end-cues {folder}", "train_samples": len(y), "val_calls": len(val),
              "weights": dict(zip(FEATURES, [round(float(w), 4) for w in weights])),
              "silence_timer": {str(s): tradeoff(calls_rests, lambda cues, s=s: s) for s in TIMERS_S},
              "cue_model": {str(p): tradeoff(calls_rests, lambda cues, p=p: end_silence(weights, cues, p))
                            for p in THRESHOLDS}}
    print(json.dumps(report, indent=2))
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("phrase-end-cues", help="fit a breath-or-end model on solos and compare it with a silence timer")
    p.add_argument("folder", help="a folder of monophonic solos, e.g. ../shared/data/wjazzd")
    p.set_defaults(run=run)
