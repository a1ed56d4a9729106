"""Which voice the box plays with: the session on the transformer (default), on the Markov voice,
or the plumbing voices (echo, none).

Nothing missing stops the music: a missing or corrupt transformer (or no torch) leaves the session
on the Markov voice, and a missing or corrupt Markov table leaves that voice learning only from
what the player plays (Continuator-style); each says so."""

from __future__ import annotations

import logging
from pathlib import Path

from sideman.model.echo import VOICES as PLUMBING_VOICES
from sideman.controls import CONTROLS
from sideman.model.markov import DEFAULT_STYLE, MarkovError, MarkovModel, load_style
from sideman.model.model_files import ModelFileError
from sideman.paths import models_dir
from sideman.play.improviser import MarkovImproviser
from sideman.play.live_transformer import HORIZON_S, STEP_BUDGET_S, TransformerImproviser
from sideman.play.session import Session
from sideman.play.steering import parse_style

log = logging.getLogger("sideman.voices")

VOICE_NAMES = ("transformer", "markov", "echo", "none")
TRANSFORMER_DIR = "transformer"   # under models/


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
            models[name] = MarkovModel.empty(name=f"{name}-live-only")
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


def make_transformer_session(mode: str = "call-response", style_spec: str = DEFAULT_STYLE,
                             controls: dict | None = None, seed: int = 0, answer_on_grid: bool = True,
                             model_dir: Path | str | None = None, model_backend: str = "auto",
                             horizon_s: float = HORIZON_S, step_budget_s: float | None = STEP_BUDGET_S,
                             warn=log.warning) -> Session:
    """A session on the transformer, the Markov voice standing by (it takes over on any trouble).
    The model is loaded, its backend opened and warmed up here, before the box reports ready.
    step_budget_s=None: no budget (offline rendering, where time is simulated)."""
    session = make_session(mode, style_spec, controls, seed, answer_on_grid, warn)
    folder = Path(model_dir) if model_dir is not None else models_dir() / TRANSFORMER_DIR
    try:
        bundle, backend = open_model(folder, model_backend, warn)
    except ModelFileError as exc:
        return _markov_instead(session, str(exc), warn)
    try:
        backend.warm_up()
    except Exception as exc:  # a graph that loads but cannot run (onnxruntime raises its own types)
        return _markov_instead(session, f"{folder}: the {backend.name} backend failed warming up "
                                        f"({type(exc).__name__}: {exc})", warn)
    session.improviser = TransformerImproviser(bundle, backend, session.improviser, horizon_s=horizon_s,
                                               step_budget_s=step_budget_s)
    return session


def open_model(folder: Path, model_backend: str = "auto", warn=log.warning):
    """(bundle, backend) for the model folder, on the model backend asked for (auto, onnx, tensorrt, torch). onnx (auto's first choice) reads the exported
    graphs without torch; torch reads the weights. Raises ModelFileError saying what went wrong
    with each when neither can run."""
    from sideman.model.backends import BackendError, onnx_available, open_backend
    from sideman.model.onnx_bundle import load_onnx_bundle

    problems = []
    if model_backend in ("auto", "onnx", "tensorrt"):
        try:
            bundle = load_onnx_bundle(folder)
            if model_backend != "auto" or onnx_available(bundle):
                return bundle, open_backend(bundle, model_backend)
        except (ModelFileError, BackendError) as exc:
            exported = (folder / "onnx").is_dir()
            if model_backend != "auto" or exported:   # a broken export is news; no export at all is not
                warn(f"model backend {model_backend}: {exc}; the transformer tries torch")
            problems.append(str(exc))
    try:
        from sideman.model.bundle import load_bundle
    except ImportError as exc:   # no torch on this machine
        problems.append(f"the torch backend needs torch ({exc})")
        raise ModelFileError("; ".join(problems)) from None
    try:
        bundle = load_bundle(folder)
    except ModelFileError as exc:
        problems.append(str(exc))
        raise ModelFileError("; ".join(problems)) from None
    return bundle, open_backend(bundle, "torch")


def _markov_instead(session: Session, problem: str, warn) -> Session:
    message = f"{problem}; the Markov voice plays instead"
    warn(message)
    session.warnings.append(message)
    return session


def make_voice(name: str, mode: str = "call-response", style_spec: str = DEFAULT_STYLE,
               controls: dict | None = None, seed: int = 0, warn=log.warning, answer_on_grid: bool = True,
               **model_options):
    """The voice by name. model_options (model_backend, horizon_s, step_budget_s, model_dir) are the
    transformer's; the other voices do not take them."""
    if name == "transformer":
        return make_transformer_session(mode, style_spec, controls, seed, answer_on_grid, warn=warn, **model_options)
    if name == "markov":
        return make_session(mode, style_spec, controls, seed, answer_on_grid, warn=warn)
    try:
        return PLUMBING_VOICES[name]()
    except KeyError:
        raise ValueError(f"unknown voice {name!r} (choose from {', '.join(VOICE_NAMES)})") from None
