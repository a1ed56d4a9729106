"""Which voice the box plays with: the session on the Markov voice (default), or the plumbing
voices (echo, none). A missing or corrupt Markov table never stops the music: the voice then
learns only from what the player plays (Continuator-style) and says so."""

from __future__ import annotations

import logging

from sideman.model.echo import VOICES as PLUMBING_VOICES
from sideman.model.markov import DEFAULT_STYLE, MarkovBlend, MarkovError, MarkovModel, load_style
from sideman.play.improviser import MarkovImproviser
from sideman.play.session import Session
from sideman.play.steering import parse_style

log = logging.getLogger("sideman.voices")

VOICE_NAMES = ("markov", "echo", "none")


def load_markov_blend(style_spec: str = DEFAULT_STYLE, warn=log.warning) -> tuple[MarkovBlend, list[str]]:
    """The style blend's tables; a table that cannot be loaded is replaced by an empty model
    (live learning only) with a clear warning. Returns the blend and the problems met."""
    problems = []
    pairs = []
    for name, weight in parse_style(style_spec):
        try:
            model = load_style(name)
        except MarkovError as exc:
            problems.append(str(exc))
            warn(f"{exc}; the {name} style plays from what you play only (live learning)")
            model = MarkovModel.train([], name=f"{name}-live-only")
        pairs.append((model, weight))
    return MarkovBlend(pairs), problems


def make_session(mode: str = "call-response", style_spec: str = DEFAULT_STYLE, controls: dict | None = None,
                 seed: int = 0, answer_on_grid: bool = True, warn=log.warning) -> Session:
    blend, _problems = load_markov_blend(style_spec, warn)
    styles = tuple(name for name, _ in parse_style(style_spec))
    return Session(MarkovImproviser(blend), mode=mode, controls=controls, styles=styles, seed=seed,
                   answer_on_grid=answer_on_grid)


def make_voice(name: str, mode: str = "call-response", style_spec: str = DEFAULT_STYLE,
               controls: dict | None = None, seed: int = 0, warn=log.warning):
    if name == "markov":
        return make_session(mode, style_spec, controls, seed, warn=warn)
    try:
        return PLUMBING_VOICES[name]()
    except KeyError:
        raise ValueError(f"unknown voice {name!r} (choose from {', '.join(VOICE_NAMES)})") from None
