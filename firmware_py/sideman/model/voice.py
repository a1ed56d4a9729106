"""The voice contract: the engine hands a voice the human's events and asks it what to play."""

from __future__ import annotations

from typing import Iterable, Protocol

# (time in monotonic ns when it should sound, channel message; the scheduler sets the AI channel)
TimedMessage = tuple[int, tuple]

# A voice may yield HUSH among its timed messages: everything it planned and has not played yet is
# dropped and its sounding notes end now (the player barged in, the mode changed).
HUSH = "hush"


class Voice(Protocol):
    name: str

    def hear(self, message: tuple, t_ns: int) -> Iterable[TimedMessage]:
        """A human message arrived at t_ns; return AI events to schedule (may be empty, may hold HUSH)."""

    def tick(self, t_ns: int) -> Iterable[TimedMessage]:
        """Called every few ms when nothing arrives (phrase ends are decided here)."""
