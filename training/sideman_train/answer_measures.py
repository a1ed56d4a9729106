"""The measures of a musical answer (`../shared/docs/MUSICIANSHIP.md`), on plain lists of notes.

Each function takes the notes a pianist would hear and returns one number; `measure_answer`
gathers the per-answer ones. Onsets within CLUSTER_S are one event (a chord, a grace)."""

from __future__ import annotations

import numpy as np

from sideman.listen.key import KeyListener
from sideman.model.events import Note
from sideman.play.motifs import top_line

CLUSTER_S = 0.03
PULSE_TOLERANCE = 0.15
LOW_PITCH = 48


def onset_clusters(notes: list[Note]) -> list[list[Note]]:
    clusters: list[list[Note]] = []
    for note in sorted(notes, key=lambda n: (n.onset_s, n.pitch)):
        if clusters and note.onset_s - clusters[-1][0].onset_s <= CLUSTER_S:
            clusters[-1].append(note)
        else:
            clusters.append([note])
    return clusters


def interval_bigrams(notes: list[Note]) -> set[tuple[int, int]]:
    """Pairs of consecutive melodic intervals of the top voice (each cluster's highest note: the
    line the answer's echo develops, `sideman.play.motifs.top_line`)."""
    intervals = np.diff([n.pitch for n in top_line(notes)]).tolist()
    return set(zip(intervals, intervals[1:]))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def notes_per_second(notes: list[Note]) -> float:
    start = min(n.onset_s for n in notes)
    end = max(n.onset_s + n.duration_s for n in notes)
    return len(notes) / max(0.5, end - start)


def pulse_share(notes: list[Note]) -> float | None:
    """Share of inter-onset intervals within ±15 % of the one before (None under three onsets)."""
    onsets = [c[0].onset_s for c in onset_clusters(notes)]
    iois = np.diff(onsets)
    if len(iois) < 2:
        return None
    ratio = iois[1:] / iois[:-1]
    return float(np.mean(np.abs(ratio - 1.0) <= PULSE_TOLERANCE))


def call_key(call: list[Note]):
    """The call's key, Krumhansl–Schmuckler over its duration-weighted pitch classes."""
    listener = KeyListener(half_life_s=1e9)
    for n in call:
        listener.note_on(n.onset_s, n.pitch, n.velocity, n.duration_s)
    return listener.key(max(n.onset_s for n in call))


def in_key_share(notes: list[Note], key) -> float | None:
    if key is None:
        return None
    scale = key.scale_pitch_classes()
    weights = np.array([max(n.duration_s, 0.01) for n in notes])
    inside = np.array([n.pitch % 12 in scale for n in notes])
    return float(np.sum(weights * inside) / np.sum(weights))


def measure_answer(call: list[Note], answer: list[Note]) -> dict:
    """Everything but the bigram reuse (which needs the other calls for its chance level)."""
    pitches = [n.pitch for n in answer]
    return {"notes": len(answer),
            "notes_per_second": notes_per_second(answer),
            "pulse_share": pulse_share(answer),
            "lowest_note": min(pitches),
            "share_below_48": float(np.mean(np.array(pitches) < LOW_PITCH)),
            "in_key_share": in_key_share(answer, call_key(call))}


def bigram_reuse(calls: list[list[Note]], answers: list[list[Note]], rng: np.random.Generator,
                 others: int = 20) -> dict:
    """Mean Jaccard of each answer's interval bigrams with its own call, over the same against
    random other calls (chance)."""
    grams = [interval_bigrams(c) for c in calls]
    own, chance = [], []
    for i, answer in enumerate(answers):
        if not answer:
            continue
        a = interval_bigrams(answer)
        own.append(jaccard(grams[i], a))
        pool = [j for j in range(len(calls)) if j != i]
        for j in rng.choice(pool, size=min(others, len(pool)), replace=False) if pool else ():
            chance.append(jaccard(grams[j], a))
    own_mean = float(np.mean(own)) if own else 0.0
    chance_mean = float(np.mean(chance)) if chance else 0.0
    return {"own": round(own_mean, 4), "chance": round(chance_mean, 4),
            "times_chance": round(own_mean / chance_mean, 2) if chance_mean > 0 else None}
