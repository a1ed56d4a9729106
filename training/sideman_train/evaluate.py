"""`sideman-train eval`: how well a model knows a folder of MIDI files, next to the Markov baseline,
and how its playing compares with real pianists.

    sideman-train eval --model models/transformer --folder ../shared/data/pijama --pianist "Brad Mehldau" \
        --split val --style mehldau --all-styles --partner tatum --json

1. NLL, bits/event. Every event of every performance, all of them the AI's (solo mode), in sliding
   windows of the model's context (each event scored once, with at least half a context before it).
   Scored once per style conditioning (--style, or every style with --all-styles). The Markov
   baseline scores the very same events (the shared codec: same time, duration and velocity bins),
   so the bits compare. Files that cannot be read are skipped with a message.
2. Musical metrics (--partner STYLE): continuations of prompts drawn from this folder and from the
   partner's files, for blends from 100 % --style to 100 % partner; their pitch-class, IOI,
   velocity, polyphony and register histograms against both real sets (overlap areas, 1 = same);
   and harmonic coherence: the model comping under real right-hand lines, the share of its onsets
   in the human's chord/scale, next to the same share for the real left hands.

Whatever the model plays here, the box plays: the parts go through `sideman play`'s simulated
session (`BoxVoice`: the Session, its policies and the live transformer voice with its lookahead
and steering, on the backend the box would pick). A continuation is the voice's answer to the
prompt played as the human's phrase in call and response; comping is comp mode under the real
right hand.
"""

from __future__ import annotations

import argparse

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sideman.controls import defaults as control_defaults
from sideman.midi_files import MidiFileError, read_performance
from sideman.model.backends import BACKEND_NAMES
from sideman.model.bundle import Bundle, ModelFileError, load_bundle
from sideman.model.events import PEDAL_DOWN, PEDAL_UP, Event, Note, Pedal, encode
from sideman.model.markov import MarkovError, MarkovModel, load_style, style_path
from sideman.paths import write_atomically
from sideman.play.improviser import MarkovImproviser
from sideman.play.live_transformer import TransformerImproviser
from sideman.play.session import Session
from sideman.play.simulate import TAIL_S, Recording, play_performance
from sideman.play.voices import load_styles
from sideman.play.voices import open_model as open_model_backend
from sideman_train.batches import performance_windows, stack, to_torch
from sideman_train.corpus import CorpusError, add_corpus_options, list_performances, pulse_track
from sideman_train.metrics import (compare_profiles, coherence_counts, profile_of_many, split_real)
from sideman_train.written_parts import ii_v_i_line, slow_melody

LN2 = float(np.log(2.0))


def add_commands(commands) -> None:
    p = commands.add_parser("eval", help="NLL (vs the Markov baseline) and musical metrics on any MIDI folder")
    p.add_argument("--model", required=True, type=Path, help="model folder (manifest.json)")
    add_corpus_options(p, "folder of MIDI files, or PiJAMA (with --pianist/--split)", "only this pianist's files",
                       p.add_mutually_exclusive_group(required=True))
    p.add_argument("--split", help="PiJAMA: only this split (train/val)")
    p.add_argument("--style", help="style conditioning (default: the model's default style)")
    p.add_argument("--all-styles", action="store_true", help="also score with every other style of the model")
    p.add_argument("--markov", help="Markov baseline: a style name in models/markov or a .npz (default: --style, else mehldau)")
    p.add_argument("--partner", help="blend partner style for the musical metrics (e.g. tatum)")
    p.add_argument("--partner-folder", type=Path, help="the partner's real files (default: PiJAMA val of that pianist)")
    p.add_argument("--partner-data", dest="partner_folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--prompts", type=int, default=12, help="prompts per real set for continuations")
    p.add_argument("--length", type=int, default=160, help="notes kept per continuation at most (its first ones)")
    p.add_argument("--model-backend", choices=BACKEND_NAMES, default="auto",
                   help="where the box's voice runs for the musical metrics and samples (default: the box's choice)")
    p.add_argument("--limit", type=int, help="at most this many files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nll-only", action="store_true", help="skip the musical metrics (generation)")
    p.add_argument("--samples", type=Path, help="also write sample duets (MIDI + piano-roll PNG) here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    p.set_defaults(run=run)


# ---------------------------------------------------------------------------------------------
# Reading any folder


def read_all(files, limit=None, say=print) -> list[tuple[str, list[Event]]]:
    out = []
    for label, path in files[:limit] if limit else files:
        try:
            events = read_performance(path)
        except MidiFileError as exc:
            say(f"skipped: {exc}")
            continue
        if not events:
            say(f"skipped: {label}: no notes")
            continue
        out.append((label, events))
    return out


def event_arrays(events: list[Event]) -> dict[str, np.ndarray]:
    """The cache's per-event arrays for a performance read with the mido reader."""
    onset = np.array([e.onset_s for e in events], dtype=np.float64)
    pitch = np.array([(PEDAL_DOWN if e.down else PEDAL_UP) if isinstance(e, Pedal) else e.pitch for e in events],
                     dtype=np.int16)
    duration = np.array([e.duration_s if isinstance(e, Note) else 0.0 for e in events], dtype=np.float64)
    velocity = np.array([e.velocity if isinstance(e, Note) else 0 for e in events], dtype=np.uint8)
    return {"onset_s": onset, "pitch": pitch, "duration_s": duration, "velocity": velocity,
            **pulse_track(onset, pitch, velocity)}


# ---------------------------------------------------------------------------------------------
# NLL


@torch.no_grad()
def examples_bits(model, examples: list[dict], style_weights: torch.Tensor, batch_size: int = 16) -> tuple[float, int]:
    """Total bits over the scored (loss_mask) events of examples, and how many there were."""
    length = model.config.context
    bits, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = to_torch(stack(examples[i:i + batch_size], length), "cpu", model.config.n_styles)
        batch["style_weights"] = style_weights.expand(batch["time"].shape[0], -1)
        nats = model.event_nats(batch)
        mask = batch["loss_mask"]
        bits += float(nats[mask].sum()) / LN2
        count += int(mask.sum())
    return bits, count


def transformer_bits(bundle: Bundle, performances: list[dict], style_weights: torch.Tensor) -> tuple[float, int]:
    """Total bits and events over performances (each a dict of event arrays), every event once."""
    length = bundle.model.config.context
    examples = [ex for arrays in performances for ex in performance_windows(arrays, length)]
    return examples_bits(bundle.model, examples, style_weights)


def markov_bits(markov: MarkovModel, performances: list[list[Event]]) -> tuple[float, int]:
    bits, count = 0.0, 0
    for events in performances:
        encoded = encode(events)
        bits += float(markov.log2_probs(encoded).sum())
        count += len(encoded)
    return bits, count


def load_markov(name: str) -> MarkovModel:
    path = Path(name)
    if path.suffix == ".npz":
        return MarkovModel.load(path)
    return load_style(name)


# ---------------------------------------------------------------------------------------------
# The box's voice


class BoxVoice:
    """The transformer voice as `sideman play --voice transformer` plays: each part goes through a
    fresh Session (so a fresh context) on the simulated clock, with the live TransformerImproviser,
    its lookahead and steering, and the Markov voice standing by from the shipped tables. The model
    is opened once; no step budget (time is simulated, the CPU may be slower than the box's)."""

    def __init__(self, bundle, backend, markov: dict):
        self.bundle, self.backend, self.markov = bundle, backend, markov

    @classmethod
    def open(cls, folder: Path, model_backend: str = "auto", styles: tuple[str, ...] = ()) -> "BoxVoice":
        """The model folder on `model_backend` (auto: the box's choice, onnx when exported); raises
        ModelFileError saying why it cannot play."""
        bundle, backend = open_model_backend(folder, model_backend, warn=lambda message: None)
        backend.warm_up()
        markov, _ = load_styles(",".join(styles) or bundle.default_style, warn=lambda message: None)
        return cls(bundle, backend, markov)

    def session(self, mode: str, blend: dict[str, float], seed: int = 0, **controls) -> Session:
        """blend: one style, or two with their shares (the style_blend control between them);
        controls: knobs other than their defaults."""
        names = tuple(blend)
        values = control_defaults()
        if len(names) == 2:
            values["style_blend"] = blend[names[1]] / sum(blend.values())
        values.update(controls)
        fallback = MarkovImproviser(self.markov)
        fallback.clear_live()   # each part starts from the shipped tables
        voice = TransformerImproviser(self.bundle, self.backend, fallback, step_budget_s=None)
        return Session(voice, mode=mode, controls=values, styles=names, seed=seed)

    def play(self, human: list[Event], mode: str, blend: dict[str, float], seed: int = 0,
             tail_s: float = TAIL_S, **controls) -> Recording:
        duet = play_performance(human, self.session(mode, blend, seed, **controls), tail_s=tail_s)
        if not duet.session.improviser.healthy:   # a backend error: the Markov voice took over
            raise RuntimeError(f"the transformer failed: {duet.session.improviser.reason}")
        return duet

    def continuation(self, prompt: list[Event], blend: dict[str, float], seed: int = 0, **controls) -> list[Note]:
        """The prompt played as the human's phrase in call and response; the voice's answer: its
        notes from the prompt's last key release on. The session listens on long enough for the
        longest answer the call can get."""
        notes = [e for e in prompt if isinstance(e, Note)]
        if not notes:
            return []
        end = max(n.onset_s + n.duration_s for n in notes)
        duet = self.play(prompt, "call-response", blend, seed, tail_s=end - notes[0].onset_s + TAIL_S, **controls)
        return [n for n in duet.ai if n.onset_s >= end]

    def accompaniment(self, human: list[Event], style: str, seed: int = 0, tail_s: float = 0.0,
                      mode: str = "comp", **controls) -> list[Note]:
        """The voice playing along with a human part (comp mode: comping under it)."""
        return self.play(human, mode, {style: 1.0}, seed, tail_s=tail_s, **controls).ai


# ---------------------------------------------------------------------------------------------
# Musical metrics


def prompts_from(performances: list[list[Event]], n: int, rng: np.random.Generator, length: int = 48) -> list[list[Event]]:
    """n excerpts of `length` events from random places, times moved to start at 0."""
    usable = [p for p in performances if len(p) > length + 1]
    out = []
    for _ in range(n if usable else 0):
        events = usable[int(rng.integers(len(usable)))]
        start = int(rng.integers(0, len(events) - length))
        excerpt = events[start:start + length]
        t0 = excerpt[0].onset_s
        out.append([_shift(e, -t0) for e in excerpt])
    return out


def _shift(e: Event, dt: float) -> Event:
    from dataclasses import replace
    return replace(e, onset_s=e.onset_s + dt)


def blend_metrics(voice: BoxVoice, style: str, partner: str, real: list[list[Event]], partner_real: list[list[Event]],
                  n_prompts: int, length: int, seed: int) -> dict:
    """Each prompt is the human's call; the box answers it (at most `length` notes kept)."""
    rng = np.random.default_rng(seed)
    prompts = prompts_from(real, n_prompts, rng) + prompts_from(partner_real, n_prompts, rng)
    real_profile, partner_profile = profile_of_many(real), profile_of_many(partner_real)
    rows, counts = [], []
    for share in (1.0, 0.75, 0.5, 0.25, 0.0):
        blend = {style: share, partner: 1.0 - share}
        generated = [voice.continuation(prompt, blend, seed=seed + i)[:length] for i, prompt in enumerate(prompts)]
        counts += [len(notes) for notes in generated]
        profile = profile_of_many(generated)
        rows.append({"style_share": share,
                     "vs_style": compare_profiles(profile, real_profile),
                     "vs_partner": compare_profiles(profile, partner_profile)})
    style_means = [r["vs_style"]["mean"] for r in rows]
    partner_means = [r["vs_partner"]["mean"] for r in rows]
    return {"style": style, "partner": partner, "prompts": len(prompts),
            "events_per_continuation": round(float(np.mean(counts)), 1) if counts else 0,
            "blends": rows,
            "closer_to_style_at_full_style": style_means[0] > partner_means[0],
            "monotonic_towards_partner": bool(all(a >= b for a, b in zip(style_means, style_means[1:]))
                                              and all(a <= b for a, b in zip(partner_means, partner_means[1:])))}


def coherence_metrics(voice: BoxVoice, style: str, real: list[list[Event]], n_prompts: int, seed: int,
                      excerpt_events: int = 160) -> dict:
    """The box comps (comp mode) under real right hands (notes ≥ 60); share of its onsets in the
    human's chord/scale, next to the real left hands' share on the same excerpts."""
    rng = np.random.default_rng(seed + 1)
    model_in = model_n = real_in = real_n = 0
    for i, excerpt in enumerate(prompts_from(real, n_prompts, rng, excerpt_events)):
        duet = split_real(excerpt)
        human = [e for e in duet if e.voice == 0 and isinstance(e, Note)]
        ai = voice.accompaniment(human, style, seed=seed + i)
        inside, counted = coherence_counts(human + ai)
        model_in, model_n = model_in + inside, model_n + counted
        inside, counted = coherence_counts(duet)
        real_in, real_n = real_in + inside, real_n + counted
    return {"model": model_in / model_n if model_n else None, "real": real_in / real_n if real_n else None,
            "model_onsets": model_n, "real_onsets": real_n}


# ---------------------------------------------------------------------------------------------
# Sample duets: the human part is written in code (written_parts.py), so no corpus material ends
# up in the files.


def write_samples(voice: BoxVoice, style: str, folder: Path, seed: int = 0) -> list[Path]:
    """Three duets as the box plays them: call and response, comping under a melody, and playing
    along (duet mode) with a line."""
    from sideman.play.duet_files import write_duet_midi, write_piano_roll
    call, melody = ii_v_i_line(), slow_melody()
    written = []
    for name, human, ai in (("call-response", call, voice.continuation(call, {style: 1.0}, seed)),
                            ("comping", melody, voice.accompaniment(melody, style, seed, tail_s=2.0)),
                            ("duet", call, voice.accompaniment(call, style, seed, tail_s=2.0, mode="duet"))):
        base = folder / f"{style}-{name}"
        write_duet_midi(base.with_suffix(".mid"), human, ai)
        write_piano_roll(base.with_suffix(".png"), human, ai, title=f"{style}: {name} (blue: human, orange: model)")
        written += [base.with_suffix(".mid"), base.with_suffix(".png")]
    return written


# ---------------------------------------------------------------------------------------------


def open_model(path: Path, command: str) -> Bundle | None:
    """The model folder, or None after a one-line message saying why it cannot be used."""
    try:
        return load_bundle(path)
    except ModelFileError as exc:
        print(f"sideman-train {command}: {exc}", file=sys.stderr)
        return None


def run(args) -> int:
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    started = time.perf_counter()
    bundle = open_model(args.model, "eval")
    if bundle is None:
        return 2
    style = args.style or bundle.default_style
    try:
        bundle.style(style)
        if args.partner:
            bundle.style(args.partner)
    except KeyError as exc:
        print(f"sideman-train eval: {exc.args[0]}", file=sys.stderr)
        return 2
    try:
        performances = read_all(list_performances(args.folder, args.pianist, args.split), args.limit, say)
    except CorpusError as exc:
        print(f"sideman-train eval: {exc}", file=sys.stderr)
        return 2
    if not performances:
        print(f"sideman-train eval: no readable MIDI files in {args.folder}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    arrays = [event_arrays(events) for _, events in performances]
    n_events = sum(a["pitch"].size for a in arrays)
    say(f"{len(performances)} performances, {n_events} events")

    styles = [s.name for s in bundle.styles] if args.all_styles else [style]
    if style in styles:
        styles.remove(style)
    styles.insert(0, style)
    nll = {}
    for name in styles:
        bits, count = transformer_bits(bundle, arrays, bundle.style_weights({name: 1.0}))
        nll[name] = bits / count
        say(f"  {name:>14}: {nll[name]:.3f} bits/event")
    markov_name = args.markov or (style if style_path(style).is_file() else "mehldau")
    try:
        markov = load_markov(markov_name)
        m_bits, m_count = markov_bits(markov, [events for _, events in performances])
        markov_report = {"table": markov_name, "bits_per_event": m_bits / m_count, "events": m_count}
    except (MarkovError, OSError) as exc:
        markov_report = {"table": markov_name, "error": str(exc)}
    report = {
        "model": str(args.model), "data": str(args.folder), "artist": args.pianist, "split": args.split,
        "files": len(performances), "events": n_events, "style": style,
        "bits_per_event": nll[style],
        "markov": markov_report,
        "ratio_to_markov": nll[style] / markov_report["bits_per_event"] if "bits_per_event" in markov_report else None,
        "by_style": dict(sorted(nll.items(), key=lambda item: item[1])),
    }
    if len(nll) > 1:
        others = {k: v for k, v in nll.items() if k != style}
        best_other = min(others, key=others.get)
        report["best_other_style"] = {"style": best_other, "bits_per_event": others[best_other]}
        report["style_is_best"] = nll[style] < others[best_other]
    real = [events for _, events in performances]
    voice = None
    if not args.nll_only or args.samples:
        try:   # the box's voice: everything played below goes through its session
            voice = BoxVoice.open(args.model, args.model_backend, (style, args.partner) if args.partner else (style,))
        except ModelFileError as exc:
            print(f"sideman-train eval: {exc}", file=sys.stderr)
            return 2
        report["voice"] = f"transformer[{voice.backend.name}]"
    if args.partner and not args.nll_only:
        partner = bundle.style(args.partner)
        try:
            partner_files = (list_performances(args.partner_folder) if args.partner_folder
                             else list_performances(args.folder, partner.artist, args.split or "val"))
        except CorpusError as exc:
            print(f"sideman-train eval: the partner's files: {exc}", file=sys.stderr)
            return 2
        partner_real = [events for _, events in read_all(partner_files, args.limit, say)]
        say(f"continuations: {style} ↔ {args.partner} blends …")
        report["blend"] = blend_metrics(voice, style, args.partner, real, partner_real,
                                        args.prompts, args.length, args.seed)
    if not args.nll_only:
        say("harmonic coherence (comping under real right hands) …")
        report["harmonic_coherence"] = coherence_metrics(voice, style, real, args.prompts, args.seed)
    if args.samples:
        report["samples"] = [str(p) for p in write_samples(voice, style, args.samples, args.seed)]
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    if args.out:
        write_atomically(args.out, (text + "\n").encode("utf-8"))
    if args.json:
        print(text)
    else:
        say(f"{style}: {report['bits_per_event']:.3f} bits/event; Markov ({markov_name}): "
            f"{markov_report.get('bits_per_event', float('nan')):.3f}")
    return 0
