"""Listening to rendered audio in tests: loudness per 50 ms window and per side of the stereo
field (the built-in piano puts you on the left and the AI on the right)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

WINDOW_S = 0.05
# Pan apart: in a window where one pianist plays alone, their side carries clearly more.
SIDE_RATIO = 1.3


def rms_windows(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(left RMS, right RMS) per 50 ms window, and the sample rate."""
    audio, rate = soundfile.read(path, always_2d=True)
    assert audio.shape[1] == 2, "the duet is stereo"
    size = int(WINDOW_S * rate)
    frames = audio[: len(audio) // size * size].reshape(-1, size, 2)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    return rms[:, 0], rms[:, 1], rate


def window_rms(left, right, start_s: float, end_s: float) -> tuple[float, float]:
    a, b = int(start_s / WINDOW_S), max(int(start_s / WINDOW_S) + 1, int(end_s / WINDOW_S))
    return float(np.sqrt((left[a:b] ** 2).mean())), float(np.sqrt((right[a:b] ** 2).mean()))


def sides(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Windows where the left (you) or the right (the AI) clearly leads, among the loud ones."""
    left, right, _ = rms_windows(path)
    loud = max(left.max(), right.max())
    return (np.flatnonzero((left > SIDE_RATIO * right) & (left > 0.2 * loud)),
            np.flatnonzero((right > SIDE_RATIO * left) & (right > 0.2 * loud)))
