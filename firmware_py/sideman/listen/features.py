"""What kind of playing it is right now: density, register and loudness over the last few seconds."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_S = 4.0


@dataclass(frozen=True)
class PlayerFeatures:
    notes_per_s: float = 0.0
    lowest: int = 60           # register of recent notes (middle C when nothing was played)
    highest: int = 72
    mean_pitch: float = 66.0
    loudness: float = 64.0     # mean velocity


class FeatureListener:
    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._recent: deque[tuple[float, int, int]] = deque()  # (onset, pitch, velocity)
        self._cached: tuple[float, PlayerFeatures] | None = None

    def note_on(self, t_s: float, pitch: int, velocity: int) -> None:
        self._recent.append((t_s, pitch, velocity))
        self._cached = None

    def features(self, t_s: float) -> PlayerFeatures:
        while self._recent and self._recent[0][0] < t_s - self.window_s:
            self._recent.popleft()
            self._cached = None
        if self._cached is not None and self._cached[0] == t_s:
            return self._cached[1]
        if not self._recent:
            found = PlayerFeatures()
        else:
            pitches = [p for _, p, _ in self._recent]
            found = PlayerFeatures(
                notes_per_s=len(self._recent) / self.window_s, lowest=min(pitches), highest=max(pitches),
                mean_pitch=sum(pitches) / len(pitches),
                loudness=sum(v for _, _, v in self._recent) / len(self._recent))
        self._cached = (t_s, found)
        return found
