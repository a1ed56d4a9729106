"""What the transformer is told besides the events themselves: the mode it plays in, the chord the
human is playing, and the tempo. Pure numpy, shared by training (sideman-train) and the live box,
so the model sees the same features in both.

- Mode (MODEL_MODES): what the model is asked to do.
  solo: every event is the AI's (a continuation); answer: phrases alternate human / AI (call and
  response, trading); comp: the AI plays the low register under the human; duet: the AI plays the
  high register over the human's comping.
- Chord: per event, the pitch-class profile of the human's notes earlier in the sequence whose
  onsets lie within CHORD_WINDOW_S of the *previous* event's onset (never the event itself, a later
  one, or its own onset time: that is what the model predicts), scaled to max 1.
- Pulse: what the beat tracker knows at the previous event's onset (PULSE_DIM numbers):
  the tempo, log2(bpm / 120) clipped to [-2, 2] (30..480 bpm), 0 when unknown; and where that onset
  fell in the beat, as confidence x (sin, cos) of its phase, then the confidence itself, so an
  unsure grid reads as "no phase" rather than as a wrong one. Models trained before the beat input
  read only the first number (ModelConfig.pulse_dim = 1).
"""

from __future__ import annotations

import numpy as np

from sideman.model.events import HUMAN, PEDAL_DOWN

MODEL_MODES: tuple[str, ...] = ("solo", "answer", "comp", "duet")
CHORD_WINDOW_S = 2.0
TEMPO_REFERENCE_BPM = 120.0
PULSE_DIM = 4            # tempo, confidence x sin(phase), confidence x cos(phase), confidence


def mode_index(mode: str | int) -> int:
    """Index of a mode in MODEL_MODES (a name or an index)."""
    if isinstance(mode, (int, np.integer)):
        if not 0 <= int(mode) < len(MODEL_MODES):
            raise ValueError(f"mode index {mode} out of range 0..{len(MODEL_MODES) - 1}")
        return int(mode)
    try:
        return MODEL_MODES.index(mode)
    except ValueError:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODEL_MODES)})") from None


def chord_profiles(onset_s, pitch, voice, window_s: float = CHORD_WINDOW_S) -> np.ndarray:
    """float32 (N, 12): for each event i, the pitch-class counts of the human notes j < i (earlier in
    the sequence) with onset_j >= onset_{i-1} - window_s, divided by their maximum; zeros when none.

    Causal by construction. O(N * 12) when onsets are in time order (the usual case: cumulative
    counts and a binary search), O(N^2) otherwise."""
    onset = np.asarray(onset_s, dtype=np.float64)
    pitch = np.asarray(pitch)
    voice = np.asarray(voice)
    n = onset.shape[0]
    human = (pitch < PEDAL_DOWN) & (voice == HUMAN)
    onehot = np.zeros((n, 12), dtype=np.float32)
    rows = np.nonzero(human)[0]
    onehot[rows, pitch[rows].astype(np.int64) % 12] = 1.0
    if n == 0:
        return onehot
    if n < 2 or np.all(onset[1:] >= onset[:-1]):
        cumulative = np.zeros((n + 1, 12), dtype=np.float32)
        np.cumsum(onehot, axis=0, out=cumulative[1:])
        # The window ends at the previous event: event i's own onset is what is being predicted.
        first = np.searchsorted(onset, _previous_onsets(onset) - window_s, side="left")
        first = np.minimum(first, np.arange(n))
        counts = cumulative[:-1] - cumulative[first]   # rows j in [first_i, i)
    else:
        j = np.arange(n)
        seen = (j[None, :] < j[:, None]) & (onset[None, :] >= (_previous_onsets(onset) - window_s)[:, None])
        counts = seen.astype(np.float32) @ onehot
    peak = counts.max(axis=1, keepdims=True)
    return np.divide(counts, peak, out=np.zeros_like(counts), where=peak > 0).astype(np.float32, copy=False)


def _previous_onsets(onset: np.ndarray) -> np.ndarray:
    """Onset of the event before each one (the first event's own onset for the first)."""
    return np.concatenate([onset[:1], onset[:-1]])


def tempo_features(bpm) -> np.ndarray:
    """float32, same shape: log2(bpm / 120) clipped to [-2, 2]; 0 where bpm is nan or <= 0."""
    b = np.asarray(bpm, dtype=np.float64)
    ok = b > 0  # false for nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ok, np.clip(np.log2(np.where(ok, b, 1.0) / TEMPO_REFERENCE_BPM), -2.0, 2.0), 0.0)
    return out.astype(np.float32)


def as_pulse(value) -> np.ndarray:
    """float32 (PULSE_DIM,) from a pulse vector, or from a bare tempo feature (no beat grid)."""
    row = np.zeros(PULSE_DIM, np.float32)
    values = np.atleast_1d(np.asarray(value, np.float32)).ravel()
    row[:min(values.size, PULSE_DIM)] = values[:PULSE_DIM]
    return row


def pulse_features(bpm, beat_phase, beat_confidence) -> np.ndarray:
    """float32 (..., PULSE_DIM) from same-shaped bpm, beat phase (0..1, 0 on the beat) and the
    tracker's confidence (0..1); nan phase or confidence count as 0 (no grid)."""
    tempo = tempo_features(bpm)
    phase = np.asarray(beat_phase, dtype=np.float64)
    confidence = np.nan_to_num(np.clip(np.asarray(beat_confidence, dtype=np.float64), 0.0, 1.0))
    angle = 2.0 * np.pi * np.nan_to_num(phase)
    return np.stack([tempo, confidence * np.sin(angle), confidence * np.cos(angle), confidence],
                    axis=-1).astype(np.float32)
