"""Which voice the box plays with: the session on the Markov voice (default), or the plumbing
voices (echo, none). A missing or corrupt Markov table never stops the music: the voice then
learns only from what the player plays (Continuator-style) and says so."""

from __future__ import annotations

import logging

from sideman.model.echo import VOICES as PLUMBING_VOICES
from sideman.controls import CONTROLS
from sideman.model.markov import DEFAULT_STYLE, MarkovError, MarkovModel, load_style
from sideman.play.improviser import MarkovImproviser
from sideman.play.session import Session
from sideman.play.steering import parse_style

log = logging.getLogger("sideman.voices")

VOICE_NAMES = ("markov", "echo", "none")


def load_styles(style_spec: str = DEFAULT_STYLE, warn=log.warning) -> tuple[dict[str, MarkovModel], list[str]]:
    """The named styles' tables; a table that cannot be loaded is replaced by an empty model
    (live learning only) with a clear warning. Returns {style: model} and the problems met."""
    problems = []
    models = {}
    for name, _weight in parse_style(style_spec):
        try:
            models[name] = load_style(name)
        except MarkovError as exc:
            problems.append(str(exc))
            warn(f"{exc}; the {name} style plays from what you play only (live learning)")
            models[name] = MarkovModel.train([], name=f"{name}-live-only")
    return models, problems


def make_session(mode: str = "call-response", style_spec: str = DEFAULT_STYLE, controls: dict | None = None,
                 seed: int = 0, answer_on_grid: bool = True, warn=log.warning) -> Session:
    """A Markov session. Two styles ('mehldau,tatum') are the ends of the style_blend control;
    weights in the spec ('mehldau:0.7,tatum:0.3') set that control's starting point."""
    models, problems = load_styles(style_spec, warn)
    pairs = parse_style(style_spec)
    # The caller's dict itself, not a copy: the panel, MIDI CCs and the session share it live.
    controls = controls if controls is not None else {c.name: c.default for c in CONTROLS}
    if len(pairs) == 2 and ":" in style_spec:
        controls["style_blend"] = pairs[1][1]
    session = Session(MarkovImproviser(models), mode=mode, controls=controls,
                      styles=tuple(name for name, _ in pairs), seed=seed, answer_on_grid=answer_on_grid)
    session.warnings = problems
    return session


def make_voice(name: str, mode: str = "call-response", style_spec: str = DEFAULT_STYLE,
               controls: dict | None = None, seed: int = 0, warn=log.warning):
    if name == "markov":
        return make_session(mode, style_spec, controls, seed, warn=warn)
    try:
        return PLUMBING_VOICES[name]()
    except KeyError:
        raise ValueError(f"unknown voice {name!r} (choose from {', '.join(VOICE_NAMES)})") from None
