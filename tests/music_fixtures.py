"""Small musical fixtures made in code (no corpus needed): lines, phrases, a tiny Markov voice."""

from __future__ import annotations

import numpy as np

from sideman.model import events as ev
from sideman.model.events import Note

C_MAJOR = (0, 2, 4, 5, 7, 9, 11)


def line(start_s: float, pitches, step_s: float, duration_s: float | None = None, velocity: int = 80) -> list[Note]:
    """One note per step (e.g. eighth notes: step = half a beat), slightly detached."""
    duration_s = duration_s if duration_s is not None else step_s * 0.8
    return [Note(start_s + i * step_s, p, velocity, duration_s) for i, p in enumerate(pitches)]


def scale_walk(n: int, seed: int, low: int = 64, high: int = 84) -> list[int]:
    """A stepwise melodic walk on C major within [low, high]."""
    rng = np.random.default_rng(seed)
    scale = [p for p in range(low, high + 1) if p % 12 in C_MAJOR]
    i = len(scale) // 2
    out = []
    for _ in range(n):
        i = int(min(len(scale) - 1, max(0, i + rng.choice([-2, -1, 1, 1, 2]))))
        out.append(scale[i])
    return out


def varied_line(n: int, seed: int) -> list[Note]:
    """A stepwise line in mixed rhythm (sixteenths to dotted quarters at 120 BPM)."""
    rng = np.random.default_rng(seed + 1000)
    t, notes = 0.0, []
    for pitch in scale_walk(n, seed, 48, 88):
        step = float(rng.choice([0.125, 0.25, 0.25, 0.5, 0.75]))
        notes.append(Note(t, pitch, int(rng.integers(50, 100)), step * 0.8))
        t += step
    return notes


def fixture_markov(seed: int = 0):
    """A Markov model trained in code on stepwise C-major lines (a few ms to build)."""
    from sideman_train.markov_fit import fit_markov

    sequences = [ev.encode(varied_line(64, seed + k)) for k in range(12)]
    return fit_markov(sequences, name="fixture", max_order=3)


def fixture_session(mode: str = "call-response", seed: int = 0, **controls):
    from sideman.controls import CONTROLS
    from sideman.play.improviser import MarkovImproviser
    from sideman.play.session import Session

    values = {c.name: c.default for c in CONTROLS}
    values.update(controls)
    return Session(MarkovImproviser(fixture_markov()), mode=mode, controls=values, seed=seed)
