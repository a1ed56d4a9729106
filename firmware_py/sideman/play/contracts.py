"""What the play layer's parts may ask of each other, declared in one place.

    Improviser   a voice that plays notes (Markov, transformer): what the session calls on it
    SessionView  what an improviser may read of the session it plays in (never the session itself)
    Partner      what the panel may ask of the voice the box plays (a listening session); the
                 plain voices (echo, silent) are not partners, and the panel then only shows them

A policy (a mode, `modes.py`) sees the whole session: it is the session's own decision maker.
"""

from __future__ import annotations

import inspect
from typing import Iterator, Protocol

import numpy as np

from sideman.listen.listener import ListenerState
from sideman.listen.phrases import Phrase
from sideman.model.events import Note
from sideman.play.request import PlayRequest
from sideman.play.steering import Steering


class SessionView(Protocol):
    """What an improviser reads of its session, while it hears, thinks and plays."""
    rng: np.random.Generator      # the session's seeded generator (same seed, same duet)

    @property
    def steering(self) -> Steering:
        """The controls as the voice applies them, read now."""

    @property
    def model_mode(self) -> str:
        """The mode's conditioning for the network (one of model.conditioning.MODEL_MODES)."""

    @property
    def mode_changes(self) -> int:
        """How many times the mode has changed (what a cached prediction is keyed on)."""

    @property
    def last_release_s(self) -> float | None:
        """When the player's last key went up (None while none has)."""

    def state(self, t_s: float) -> ListenerState: ...

    def state_now(self) -> ListenerState:
        """The listener's state at the time being handled."""

    def newest_human_duration_s(self) -> float | None:
        """How long the player's newest finished note lasted (None before the first)."""

    def predicted_answer(self, t_s: float) -> PlayRequest | None:
        """The answer the mode would ask for if the phrase ended with the key just released."""


class Improviser(Protocol):
    """A voice that plays the notes a session asks for."""
    name: str
    styles: dict

    def hear_note(self, session: SessionView, t_s: float, pitch: int, velocity: int) -> None: ...
    def hear_pedal(self, session: SessionView, t_s: float, down: bool) -> None: ...
    def learn(self, notes: list[Note]) -> None: ...
    def think(self, session: SessionView, t_s: float) -> None:
        """Every quiet engine tick: work that can wait (lookahead, speculative answers)."""
    def cancel(self, session: SessionView, t_s: float) -> None:
        """The session hushed: nothing planned is played."""
    def improvise(self, request: PlayRequest, state_now, steering: Steering,
                  rng: np.random.Generator) -> Iterator[Note]:
        """The notes for a request, in onset order (an iterator, or a stream with peek/pop)."""
    def available_styles(self) -> list[str]: ...
    def player_returns(self, t_s: float, within_s: float) -> float | None:
        """Its own chance that the player plays again within `within_s` of t_s (nothing came since
        their newest note); None: no opinion. The phrase-end rule reads it."""

    @property
    def status(self) -> dict:
        """voice (who plays now), reason (why it handed over, else ""), fallbacks; more per voice."""


class Partner(Protocol):
    """The voice the panel talks to: a session that listens and answers."""
    name: str
    controls: dict          # the live control values (shared with the panel and the CLI)
    warnings: list[str]     # e.g. a style table that could not be loaded

    @property
    def improviser_name(self) -> str:
        """Who is playing now (the transformer, or the Markov voice standing in)."""

    @property
    def improviser_status(self) -> dict:
        """The improviser's status (Improviser.status): why it handed over, its fall-backs."""

    @property
    def mode(self) -> str:
        """The mode playing now (the panel may have changed it since the box started)."""

    def state(self, t_s: float) -> ListenerState: ...
    def ai_busy(self, t_s: float) -> bool: ...
    def hush(self, t_s: float, barge_in: bool = False) -> None: ...
    def keep_phrase(self, t_s: float) -> Phrase | None: ...
    def set_mode(self, mode: str, t_s: float) -> None: ...
    def use_styles(self, styles: tuple[str, ...], models: dict) -> None: ...
    def available_styles(self) -> list[str]: ...
    def use_clock(self, clock_follower) -> None: ...


_PARTNER_MEMBERS = tuple(sorted({name for name in vars(Partner) if not name.startswith("_")}
                                | set(Partner.__annotations__)))


def as_partner(voice) -> Partner | None:
    """The voice as a Partner when it has every member the protocol declares, else None. Looked up
    statically: isinstance() on a runtime-checkable protocol would run each property (Python 3.11),
    and improviser_status summarises the transformer's step costs."""
    for name in _PARTNER_MEMBERS:
        try:
            inspect.getattr_static(voice, name)
        except AttributeError:
            return None
    return voice
