"""`sideman-train export`: the transformer as static-shape ONNX graphs for the box's TensorRT build.

    sideman-train export --model models/transformer [--out DIR] [--opset 17] [--json]

Five graphs, batch 1, the model's context N as the cache length (L layers, H heads, hd = D / H, P
the model's pulse_dim: tempo and beat phase, conditioning.pulse_features):

    init           time, pitch, duration, velocity, voice (1,N) int64, chord (1,N,12), pulse (1,N,P),
                   mode (1,) int64, style_vector (1,D)
                   → h (1,N,D), k_out, v_out (L,1,H,N,hd)
                   The whole-context forward (prefill). Position t's input is event t-1 (the begin
                   vector at t = 0), so h[:, t] predicts event t; positions after the real length are
                   padding, and causal attention keeps them out of the earlier ones.
    step           previous (1,5) int64 (time, pitch, duration, velocity, voice of the event before),
                   begin (1,) float (1.0 at a sequence's start: previous is ignored), style_vector (1,D),
                   mode (1,) int64, chord (1,12), pulse (1,P), position (1,) int64,
                   k_cache, v_cache (L,1,H,N,hd)
                   → h (1,D), time_logits (1,27), human_time_logits (1,27), k_out, v_out
                   One event. `time_logits` is the time head for the AI voice, fused in so the host
                   loop needs no separate time-head call (the AI is the only voice the box samples);
                   `human_time_logits` the same head for the human voice: when the player is likely
                   to play again (the partner's phrase-end cue).
                   `position` is a (1,) tensor, not a scalar: one shape rule for every input, and no
                   0-d bindings for TensorRT or the host code.
    pitch_head     h (1,D), voice (1,), time (1,)                      → logits (1,130)
    duration_head  h, voice, time, pitch                               → logits (1,23)
    velocity_head  h, voice, time, pitch, duration                     → logits (1,16)
                   The field heads see h + voice_out(voice), as in the model.

The caches the graphs return are whole caches in the layout `step` takes (ping-pong two buffers on
the host). `init`'s k_out/v_out hold garbage after the real length; `step` overwrites slot
`position` and masks the slots after it, so that garbage is never seen.

Every graph takes the style *vector* (blend weights @ style table, computed on the host from the
manifest's style rows), so one engine serves every blend and styles fine-tuned later.

Opset 17 by default: TensorRT 8.6 (JetPack 6.0) parses ONNX up to opset 17. At 17 the graphs come
from the TorchScript exporter (`dynamo=False`): torch 2.13's default (dynamo) exporter writes opset 18
and its down-conversion to 17 produces an invalid Split. `--opset 18` or higher uses the dynamo exporter.

After export: onnx.checker (full), then parity against PyTorch with onnxruntime on the CPU, on random
inputs and on a short duet fed as TensorRT will see it (init on a prefix, then steps). Any figure
above the tolerance (1e-3) fails the export (exit 1): the new graphs go to OUT/rejected/ and the
manifest is left alone. On success the graphs replace OUT/*.onnx, OUT/parity.json records the figures
and timings, and the model folder's manifest.json gets its "graphs" list (the schema
image/sideman-engine-build reads) and an "onnx_export" record, written atomically.

trtexec_args carry no shapes: the graphs are fully static, and trtexec refuses --shapes/--minShapes/…
for a static model ("Static model does not take explicit shapes"), which would fail the box's build.
The shapes are in the ONNX files and listed under manifest["onnx_export"]["io"].
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from sideman.model.bundle import (MANIFEST, ModelFileError, load_bundle, read_manifest, sha256_of,
                                  write_json_atomically)
from sideman.model.conditioning import chord_profiles, pulse_features
from sideman.model.events import AI, HUMAN, Event, Note, Pedal, encode, sort_events
from sideman.model.model_files import GRAPH_NAMES, MODEL_FILE_MODE
from sideman.model.transformer import (CHORD_DIM, N_DURATION, N_PITCH, N_TIME, N_VELOCITY, JazzTransformer)
from sideman.paths import write_atomically_with

DEFAULT_OPSET = 17
TOLERANCE = 1e-3
ENGINE_SCHEMA = 1                       # image/sideman-engine-build's manifest schema
TRTEXEC_ARGS = ["--skipInference"]      # build the plan, skip trtexec's benchmark (first boot is slow enough)
PROTOBUF_LIMIT = 2 * 1024 ** 3
STYLE_TABLE_FILE = "style_table.npy"
PARITY_FILE = "parity.json"


class ExportError(Exception):
    """The graphs cannot be exported or checked (the message says why)."""


# ---------------------------------------------------------------------------------------------
# The exported modules (thin wrappers: the numbers are the model's own functions)

@contextlib.contextmanager
def _style_vector_given(model: JazzTransformer):
    """Inside: model.style_vector(x) returns x, so forward() takes the blended style vector where it
    expects style_weights (forward computes `style_weights @ style_table` through style_vector())."""
    model.style_vector = lambda vector: vector    # an instance attribute shadows the method
    try:
        yield
    finally:
        del model.style_vector


class InitGraph(nn.Module):
    def __init__(self, model: JazzTransformer):
        super().__init__()
        self.model = model

    def forward(self, time, pitch, duration, velocity, voice, chord, pulse, mode, style_vector):
        batch = {"time": time, "pitch": pitch, "duration": duration, "velocity": velocity, "voice": voice,
                 "chord": chord, "pulse": pulse, "mode": mode, "style_weights": style_vector}
        with _style_vector_given(self.model):
            return self.model(batch, return_cache=True)


class StepGraph(nn.Module):
    def __init__(self, model: JazzTransformer):
        super().__init__()
        self.model = model

    def forward(self, previous, begin, style_vector, mode, chord, pulse, position, k_cache, v_cache):
        h, k, v = self.model.step(previous, begin, style_vector, mode, chord, pulse, position, k_cache, v_cache)
        time_logits = self.model.time_head(h + self.model.voice_out.weight[AI])
        human_time_logits = self.model.time_head(h + self.model.voice_out.weight[HUMAN])
        return h, time_logits, human_time_logits, k, v


class HeadGraph(nn.Module):
    """One field head: (h, voice, *chosen fields) → logits."""

    def __init__(self, model: JazzTransformer, field: str):
        super().__init__()
        self.model = model
        self.head = getattr(model, f"{field}_head")

    def forward(self, h, voice, *chosen):
        return self.head(h + self.model.voice_out(voice), *chosen)


HEAD_FIELDS = {"pitch_head": ("pitch", ["time"]),
               "duration_head": ("duration", ["time", "pitch"]),
               "velocity_head": ("velocity", ["time", "pitch", "duration"])}


def cache_shape(model: JazzTransformer) -> tuple[int, ...]:
    c = model.config
    return (c.n_layers, 1, c.n_heads, c.context, c.d_model // c.n_heads)


def graph_specs(model: JazzTransformer) -> dict[str, dict]:
    """Per graph: the wrapper module, example inputs (names → tensors, the static shapes) and output names."""
    c = model.config
    n, d, p = c.context, c.d_model, c.pulse_dim
    long = torch.long
    k, v = model.empty_cache()
    specs = {
        "init": {"module": InitGraph(model), "outputs": ["h", "k_out", "v_out"], "inputs": {
            "time": torch.zeros(1, n, dtype=long), "pitch": torch.zeros(1, n, dtype=long),
            "duration": torch.zeros(1, n, dtype=long), "velocity": torch.zeros(1, n, dtype=long),
            "voice": torch.zeros(1, n, dtype=long), "chord": torch.zeros(1, n, CHORD_DIM),
            "pulse": torch.zeros(1, n, p), "mode": torch.zeros(1, dtype=long), "style_vector": torch.zeros(1, d)}},
        "step": {"module": StepGraph(model), "outputs": ["h", "time_logits", "human_time_logits", "k_out", "v_out"],
                 "inputs": {
            "previous": torch.zeros(1, 5, dtype=long), "begin": torch.ones(1), "style_vector": torch.zeros(1, d),
            "mode": torch.zeros(1, dtype=long), "chord": torch.zeros(1, CHORD_DIM), "pulse": torch.zeros(1, p),
            "position": torch.zeros(1, dtype=long), "k_cache": k, "v_cache": v}},
    }
    for name, (field, given) in HEAD_FIELDS.items():
        inputs = {"h": torch.zeros(1, d), "voice": torch.zeros(1, dtype=long)}
        inputs.update({g: torch.zeros(1, dtype=long) for g in given})
        specs[name] = {"module": HeadGraph(model, field), "outputs": ["logits"], "inputs": inputs}
    for spec in specs.values():
        spec["module"].eval()
    return specs


# ---------------------------------------------------------------------------------------------
# Export

def _exporter_for(opset: int, exporter: str) -> str:
    if exporter != "auto":
        return exporter
    return "torchscript" if opset < 18 else "dynamo"


def _export_one(spec: dict, path: Path, opset: int, exporter: str) -> None:
    module, names = spec["module"], list(spec["inputs"])
    args = tuple(spec["inputs"].values())
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    large = weight_bytes > 0.9 * PROTOBUF_LIMIT
    import warnings

    # stdout stays the command's (--json); the exporters' progress lines go to stderr.
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")      # the TorchScript exporter's deprecation notice, tracer notes
        if exporter == "torchscript":
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                              input_names=names, output_names=spec["outputs"], do_constant_folding=True)
        elif exporter == "dynamo":
            torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset,
                              input_names=names, output_names=spec["outputs"], external_data=large,
                              verbose=False)
        else:
            raise ExportError(f"unknown exporter {exporter!r} (auto, torchscript or dynamo)")
    if exporter == "torchscript":
        _fold_constants(path)


def _fold_constants(path: Path) -> None:
    """Constant folding and dead-code removal (onnxscript's optimizer, which the dynamo exporter runs
    itself). With static shapes this turns the TorchScript exporter's causal-mask subgraph (Shape,
    Trilu, ...) and its Identity/Constant nodes into initializers: fewer ops for TensorRT's parser."""
    try:
        import onnx
        from onnxscript import optimizer
    except ImportError:
        return
    if path.stat().st_size > 0.9 * PROTOBUF_LIMIT:
        return
    folded = optimizer.optimize(onnx.load(str(path)))
    onnx.save(folded, str(path))


def external_files(onnx_path: Path) -> list[str]:
    """Files holding this graph's external data (names relative to the graph's folder)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    found = []
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value not in found:
                    found.append(entry.value)
    return found


def graph_io(onnx_path: Path) -> dict:
    """Inputs and outputs of a graph as {name, dtype, shape}, read from the file."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)

    def describe(values):
        out = []
        for value in values:
            t = value.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            out.append({"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                        "shape": shape})
        return out

    return {"inputs": describe(proto.graph.input), "outputs": describe(proto.graph.output),
            "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))}


def check_graph(onnx_path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise ExportError(f"{onnx_path}: onnx.checker: {exc}") from None
    io = graph_io(onnx_path)
    dynamic = [f"{v['name']}{v['shape']}" for v in io["inputs"] + io["outputs"]
               if not all(isinstance(s, int) and s > 0 for s in v["shape"])]
    if dynamic:
        raise ExportError(f"{onnx_path}: not static (the box's trtexec build takes no shapes): {', '.join(dynamic)}")


def export_graphs(model: JazzTransformer, folder: Path, opset: int = DEFAULT_OPSET,
                  exporter: str = "auto") -> dict[str, float]:
    """Write every graph to folder/<name>.onnx and check it. Returns seconds per graph."""
    model.eval()
    chosen = _exporter_for(opset, exporter)
    seconds = {}
    for name, spec in graph_specs(model).items():
        started = time.perf_counter()
        path = folder / f"{name}.onnx"
        try:
            _export_one(spec, path, opset, chosen)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"graph {name}: torch.onnx.export ({chosen}, opset {opset}) failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        check_graph(path)
        seconds[name] = round(time.perf_counter() - started, 3)
    return seconds


# ---------------------------------------------------------------------------------------------
# Parity with onnxruntime

def ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtGraphs:
    """The exported graphs under onnxruntime, called with numpy arrays by input name."""

    def __init__(self, folder: Path, names=GRAPH_NAMES):
        self.sessions = {name: ort_session(folder / f"{name}.onnx") for name in names}

    def __call__(self, name: str, **inputs) -> list[np.ndarray]:
        feeds = {k: np.ascontiguousarray(v.detach().numpy() if isinstance(v, torch.Tensor) else v)
                 for k, v in inputs.items()}
        return self.sessions[name].run(None, feeds)


def _array(x) -> np.ndarray:
    return (x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64)


class Figures:
    """Largest |onnx - torch| per output, and the largest |torch| beside it (the scale)."""

    def __init__(self):
        self.diff: dict[str, float] = {}
        self.scale: dict[str, float] = {}

    def add(self, key: str, got, want) -> None:
        got, want = _array(got), _array(want)
        if got.shape != want.shape:
            raise ExportError(f"{key}: shape mismatch in the parity check: {got.shape} vs {want.shape}")
        if not got.size:
            return
        self.diff[key] = max(self.diff.get(key, 0.0), float(np.max(np.abs(got - want))))
        self.scale[key] = max(self.scale.get(key, 0.0), float(np.max(np.abs(want))))

    def worst(self) -> float:
        return max(self.diff.values(), default=0.0)

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.diff, "max_abs_reference": self.scale}


def _torch_heads(model, h, voice, time_, pitch, duration) -> dict[str, torch.Tensor]:
    state = h + model.voice_out(voice)
    return {"pitch_head": model.pitch_head(state, time_),
            "duration_head": model.duration_head(state, time_, pitch),
            "velocity_head": model.velocity_head(state, time_, pitch, duration)}


def _ort_heads(graphs: OrtGraphs, h, voice, time_, pitch, duration) -> dict[str, np.ndarray]:
    return {"pitch_head": graphs("pitch_head", h=h, voice=voice, time=time_)[0],
            "duration_head": graphs("duration_head", h=h, voice=voice, time=time_, pitch=pitch)[0],
            "velocity_head": graphs("velocity_head", h=h, voice=voice, time=time_, pitch=pitch,
                                    duration=duration)[0]}


def _random_fields(g: torch.Generator, shape) -> dict[str, torch.Tensor]:
    return {"time": torch.randint(0, N_TIME, shape, generator=g),
            "pitch": torch.randint(0, N_PITCH, shape, generator=g),
            "duration": torch.randint(0, N_DURATION, shape, generator=g),
            "velocity": torch.randint(0, N_VELOCITY, shape, generator=g),
            "voice": torch.randint(0, 2, shape, generator=g)}


def _random_style(model, g) -> torch.Tensor:
    weights = torch.rand(1, model.config.n_styles, generator=g)
    return model.style_vector(weights / weights.sum())


@torch.no_grad()
def parity_random(model: JazzTransformer, graphs: OrtGraphs, seed: int = 0, trials: int = 3) -> Figures:
    """Each graph against PyTorch on random inputs (step at position 0 with begin=1, inside, and last)."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    n, d = c.context, c.d_model
    figures = Figures()
    for trial in range(trials):
        style = _random_style(model, g)
        mode = torch.randint(0, c.n_modes, (1,), generator=g)
        # init: a whole random context
        fields = _random_fields(g, (1, n))
        chord = torch.rand(1, n, CHORD_DIM, generator=g)
        pulse = _random_pulse(g, (1, n, c.pulse_dim))
        with _style_vector_given(model):
            h_ref, k_ref, v_ref = model({**fields, "chord": chord, "pulse": pulse, "mode": mode,
                                         "style_weights": style}, return_cache=True)
        h, k, v = graphs("init", **fields, chord=chord, pulse=pulse, mode=mode, style_vector=style)
        figures.add("init_h", h, h_ref)
        figures.add("init_k", k, k_ref)
        figures.add("init_v", v, v_ref)
        # step: random caches at the first, a middle and the last position
        for position in (0, int(torch.randint(1, max(2, n - 1), (1,), generator=g)), n - 1):
            shape = cache_shape(model)
            k_cache, v_cache = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
            prev = _random_fields(g, (1,))
            previous = torch.stack([prev[f] for f in ("time", "pitch", "duration", "velocity", "voice")], dim=1)
            begin = torch.tensor([1.0 if position == 0 else 0.0])
            chord1, pulse1 = torch.rand(1, CHORD_DIM, generator=g), _random_pulse(g, (1, c.pulse_dim))
            pos = torch.tensor([position])
            h_ref, k_ref, v_ref = model.step(previous, begin, style, mode, chord1, pulse1, pos, k_cache, v_cache)
            t_ref = model.next_time_logits(h_ref, AI)
            human_ref = model.next_time_logits(h_ref, HUMAN)
            h, t_logits, human_logits, k, v = graphs("step", previous=previous, begin=begin, style_vector=style,
                                                     mode=mode, chord=chord1, pulse=pulse1, position=pos,
                                                     k_cache=k_cache, v_cache=v_cache)
            figures.add("step_h", h, h_ref)
            figures.add("step_time_logits", t_logits, t_ref)
            figures.add("step_human_time_logits", human_logits, human_ref)
            figures.add("step_k", k, k_ref)
            figures.add("step_v", v, v_ref)
        # heads: random states and fields
        for _ in range(4):
            hr = torch.randn(1, d, generator=g)
            f = _random_fields(g, (1,))
            want = _torch_heads(model, hr, f["voice"], f["time"], f["pitch"], f["duration"])
            got = _ort_heads(graphs, hr, f["voice"], f["time"], f["pitch"], f["duration"])
            for name in want:
                figures.add(name, got[name], want[name])
    return figures


def _random_pulse(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Pulse inputs in their real ranges: tempo feature in [-2, 2], the rest in [-1, 1]."""
    pulse = torch.rand(shape, generator=g) * 2 - 1
    pulse[..., 0] *= 2
    return pulse


def encode_with_voices(events: list[Event]) -> tuple[list[tuple[int, int, int, int, int]], np.ndarray, np.ndarray]:
    """Events → [(time, pitch, dur, vel, voice)], onsets (s) and pitch tokens, in codec order."""
    ordered = sort_events(events)   # encode() keeps this order (its sort is stable on the same key)
    encoded = [code + (e.voice,) for code, e in zip(encode(ordered), ordered)]
    return (encoded, np.array([e.onset_s for e in ordered], dtype=np.float64),
            np.array([code[1] for code in encoded], dtype=np.int64))


def demo_duet(context: int, bpm: float = 140.0) -> dict[str, np.ndarray]:
    """A short, real-looking duet (the human comps ii-V-I with pedal, the AI answers with a line),
    encoded as the model sees it: events (n,5) as (time, pitch, duration, velocity, voice) bins,
    chord (n,12), pulse (n,PULSE_DIM) (a sure grid at bpm). At most `context` events."""
    beat = 60.0 / bpm
    events = [Pedal(0.0, True, HUMAN)]
    for i, voicing in enumerate(([50, 53, 57, 60], [43, 53, 59, 64], [48, 52, 55, 59])):
        for j, p in enumerate(voicing):
            events.append(Note(2 * i * beat + 0.01 * j, p, 64 + 4 * j, 1.8 * beat, HUMAN))
    events.append(Pedal(5.9 * beat, False, HUMAN))
    for i, p in enumerate((74, 77, 81, 79, 77, 76, 74, 72, 71, 72)):
        events.append(Note(6 * beat + 0.5 * i * beat, p, 88 - 2 * i, 0.45 * beat, AI))
    encoded, onsets, pitches = encode_with_voices(events)
    encoded, onsets, pitches = encoded[:context], onsets[:context], pitches[:context]
    voices = np.array([e[4] for e in encoded])
    # position t's pulse is where event t-1 fell in the beat (none before the first)
    previous = np.concatenate([[np.nan], onsets[:-1]])
    pulse = pulse_features(np.full(len(encoded), bpm), (previous / beat) % 1.0, np.r_[0.0, np.full(len(encoded) - 1, 0.9)])
    return {"events": np.array(encoded, dtype=np.int64),
            "chord": chord_profiles(onsets, pitches, voices), "pulse": pulse}


def _padded(values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
    out[:len(values)] = values
    return out


@torch.no_grad()
def parity_sequence(model: JazzTransformer, graphs: OrtGraphs, style_vector: torch.Tensor, mode: int = 1,
                    prefix: int | None = None) -> dict:
    """The duet as the box runs it: `init` on a prefix (padded to the context), then one `step` per
    event, each step's h driving the heads with the event's real fields. Against model.forward on the
    whole sequence (and its heads)."""
    c = model.config
    duet = demo_duet(c.context)
    events, chord, pulse = duet["events"], duet["chord"], duet["pulse"][:, :c.pulse_dim]
    n = len(events)
    prefix = max(1, min(n - 1, n // 2 if prefix is None else prefix))
    fields = {f: torch.from_numpy(events[None, :, i].copy())
              for i, f in enumerate(("time", "pitch", "duration", "velocity", "voice"))}
    mode_t = torch.tensor([mode])
    with _style_vector_given(model):
        h_ref, k_ref, v_ref = model({**fields, "chord": torch.from_numpy(chord[None]),
                                     "pulse": torch.from_numpy(pulse[None]), "mode": mode_t,
                                     "style_weights": style_vector}, return_cache=True)
    figures = Figures()
    # What the box knows at the prefix: its events and conditioning, zeros after (padding).
    padded = {f: _padded(x[0, :prefix].numpy(), c.context)[None] for f, x in fields.items()}
    h, k, v = graphs("init", **padded, chord=_padded(chord[:prefix], c.context)[None],
                     pulse=_padded(pulse[:prefix], c.context)[None], mode=mode_t, style_vector=style_vector)
    figures.add("init_h", h[:, :prefix], h_ref[:, :prefix])
    figures.add("init_k", k[:, :, :, :prefix], k_ref[:, :, :, :prefix])
    figures.add("init_v", v[:, :, :, :prefix], v_ref[:, :, :, :prefix])
    states = [(h[:, t], h_ref[:, t]) for t in range(prefix)]
    for t in range(prefix, n):
        h_t, time_logits, human_time_logits, k, v = graphs(
            "step", previous=events[None, t - 1], begin=np.zeros(1, np.float32), style_vector=style_vector,
            mode=mode_t, chord=chord[None, t], pulse=pulse[None, t], position=np.array([t]), k_cache=k, v_cache=v)
        figures.add("step_h", h_t, h_ref[:, t])
        figures.add("step_time_logits", time_logits, model.next_time_logits(h_ref[:, t], AI))
        figures.add("step_human_time_logits", human_time_logits, model.next_time_logits(h_ref[:, t], HUMAN))
        states.append((h_t, h_ref[:, t]))
    figures.add("step_k", k[:, :, :, :n], k_ref)
    figures.add("step_v", v[:, :, :, :n], v_ref)
    for t, (h_onnx, h_torch) in enumerate(states):
        e = torch.from_numpy(events[t:t + 1])
        voice, time_, pitch, duration = e[:, 4], e[:, 0], e[:, 1], e[:, 2]
        want = _torch_heads(model, h_torch, voice, time_, pitch, duration)
        got = _ort_heads(graphs, h_onnx, voice, time_, pitch, duration)
        for name in want:
            figures.add(name, got[name], want[name])
    return {"events": n, "prefix": prefix, "figures": figures}


def step_latency_ms(model: JazzTransformer, graphs: OrtGraphs, runs: int = 30) -> float:
    """Median wall time of one step graph call under onnxruntime (CPU, one thread)."""
    k, v = model.empty_cache()
    feeds = {"previous": np.zeros((1, 5), np.int64), "begin": np.zeros(1, np.float32),
             "style_vector": np.zeros((1, model.config.d_model), np.float32), "mode": np.zeros(1, np.int64),
             "chord": np.zeros((1, CHORD_DIM), np.float32),
             "pulse": np.zeros((1, model.config.pulse_dim), np.float32),
             "position": np.array([model.config.context // 2]), "k_cache": k.numpy(), "v_cache": v.numpy()}
    session = graphs.sessions["step"]
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 3)


# ---------------------------------------------------------------------------------------------
# Manifest

def _entries(model_dir: Path, folder: Path) -> list[dict]:
    rel = folder.resolve().relative_to(model_dir.resolve())
    entries = []
    for name in GRAPH_NAMES:
        path = folder / f"{name}.onnx"
        entry = {"name": name, "onnx": (rel / path.name).as_posix(), "sha256": sha256_of(path)}
        extra = [{"file": (rel / f).as_posix(), "sha256": sha256_of(folder / f)} for f in external_files(path)]
        if extra:
            entry["external_data"] = extra
        entry["trtexec_args"] = list(TRTEXEC_ARGS)
        entry["fp16"] = True
        entries.append(entry)
    return entries


def verify_graphs(model_dir: Path | str) -> list[str]:
    """Problems with the exported graphs a model folder's manifest lists (empty: all good): the
    checks the box's engine build makes (entries, files present, sha256), plus graphs exported
    from other weights than the manifest's."""
    model_dir = Path(model_dir)
    try:
        manifest = read_manifest(model_dir)
    except ModelFileError as exc:
        return [str(exc)]
    graphs = manifest.get("graphs")
    if not isinstance(graphs, list) or not graphs:
        return [f"{model_dir / MANIFEST}: lists no graphs (run sideman-train export)"]
    if manifest.get("schema", ENGINE_SCHEMA) != ENGINE_SCHEMA:
        return [f"{model_dir / MANIFEST}: schema {manifest.get('schema')!r}, the engine build reads {ENGINE_SCHEMA}"]
    problems = []
    names = [g.get("name") for g in graphs if isinstance(g, dict)]
    for wanted in GRAPH_NAMES:
        if wanted not in names:
            problems.append(f"graph {wanted}: not listed")
    for g in graphs:
        if not isinstance(g, dict) or not isinstance(g.get("onnx"), str) or not isinstance(g.get("sha256"), str):
            problems.append(f"a graph entry is malformed: {g!r}")
            continue
        files = [(g["onnx"], g["sha256"])] + [(e.get("file"), e.get("sha256")) for e in g.get("external_data") or []]
        for rel, want in files:
            if not isinstance(rel, str) or os.path.isabs(rel) or ".." in Path(rel).parts:
                problems.append(f"graph {g.get('name')}: bad path {rel!r}")
                continue
            path = model_dir / rel
            if not path.is_file():
                problems.append(f"graph {g.get('name')}: {path} is missing")
            elif sha256_of(path).lower() != str(want).lower():
                problems.append(f"graph {g.get('name')}: {path} does not match its sha256 in the manifest")
        args = [a for a in g.get("trtexec_args") or [] if isinstance(a, str)]
        if any(a.split("=", 1)[0] in ("--shapes", "--minShapes", "--optShapes", "--maxShapes") for a in args):
            problems.append(f"graph {g.get('name')}: trtexec_args give shapes to a static graph (trtexec refuses)")
    record = manifest.get("onnx_export") or {}
    weights = (manifest.get("weights") or {}).get("sha256")
    if record.get("weights_sha256") and weights and record["weights_sha256"] != weights:
        problems.append("the graphs were exported from other weights than the manifest's "
                        "(run sideman-train export again)")
    return problems


# ---------------------------------------------------------------------------------------------
# The command

def export_model(model_dir: Path | str, out: Path | str | None = None, opset: int = DEFAULT_OPSET,
                 exporter: str = "auto", tolerance: float = TOLERANCE, seed: int = 0) -> dict:
    """Export, check, compare and publish. Returns the summary (its "passed" says whether the
    parity held; when it did not, the graphs are in OUT/rejected/ and nothing else changed)."""
    if opset < 17:
        raise ExportError(f"opset {opset}: the graphs need opset 17 or later (LayerNormalization)")
    model_dir = Path(model_dir)
    bundle = load_bundle(model_dir)
    model = bundle.model.eval()
    out = Path(out) if out is not None else model_dir / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    try:
        out.resolve().relative_to(model_dir.resolve())
        inside = True
    except ValueError:
        inside = False
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        export_s = export_graphs(model, staging, opset, exporter)
        parity_started = time.perf_counter()
        graphs = OrtGraphs(staging)
        g = torch.Generator().manual_seed(seed)
        style = _random_style(model, g)
        random_figures = parity_random(model, graphs, seed)
        sequence = parity_sequence(model, graphs, style)
        latency = step_latency_ms(model, graphs)
        parity_s = round(time.perf_counter() - parity_started, 3)
        worst = max(random_figures.worst(), sequence["figures"].worst())
        passed = bool(worst <= tolerance)
        io = {name: graph_io(staging / f"{name}.onnx") for name in GRAPH_NAMES}
        report = {
            "passed": passed, "tolerance": tolerance, "max_abs_diff": worst,
            "random": random_figures.to_dict(),
            "sequence": {"events": sequence["events"], "prefix": sequence["prefix"],
                         **sequence["figures"].to_dict()},
            "runtime": "onnxruntime CPUExecutionProvider, 1 thread (TensorRT fp16 on the box must be checked there)",
            "timing": {"export_s": export_s, "export_total_s": round(sum(export_s.values()), 3),
                       "parity_s": parity_s, "ort_step_ms": latency},
            "opset": opset, "exporter": _exporter_for(opset, exporter),
            "torch": torch.__version__, "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx"),
            "weights_sha256": bundle.manifest["weights"]["sha256"],
            "config": model.config.to_dict(),
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if passed:
            target = out
        else:
            target = out / "rejected"
            target.mkdir(exist_ok=True)
        for name in GRAPH_NAMES:
            files = [f"{name}.onnx"] + external_files(staging / f"{name}.onnx")
            for f in files:
                os.replace(staging / f, target / f)
        write_json_atomically(target / PARITY_FILE, report)
        manifest_updated = False
        if passed and inside:
            manifest = read_manifest(model_dir)
            manifest["schema"] = ENGINE_SCHEMA
            manifest["graphs"] = _entries(model_dir, out)
            manifest["onnx_export"] = {
                "opset": opset, "exporter": report["exporter"], "torch": torch.__version__,
                "weights_sha256": report["weights_sha256"], "exported_at": report["exported_at"],
                "parity": (out.resolve().relative_to(model_dir.resolve()) / PARITY_FILE).as_posix(),
                "max_abs_diff": worst, "io": io,
                "style_table": write_style_table(bundle, model_dir, out)}
            write_json_atomically(model_dir / MANIFEST, manifest)
            manifest_updated = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"model": str(model_dir), "out": str(target), "passed": passed, "max_abs_diff": worst,
            "tolerance": tolerance, "manifest_updated": manifest_updated, "outside_model_folder": not inside,
            "graphs": [{"name": name, "onnx": str(target / f"{name}.onnx"),
                        "sha256": sha256_of(target / f"{name}.onnx"),
                        "bytes": (target / f"{name}.onnx").stat().st_size, **io[name]} for name in GRAPH_NAMES],
            "parity": {"random": random_figures.diff, "sequence": sequence["figures"].diff},
            "timing": {**report["timing"], "total_s": round(time.perf_counter() - started, 3)},
            "opset": opset, "exporter": report["exporter"]}


def write_style_table(bundle, model_dir: Path, out: Path) -> dict:
    """The style table (fine-tuned rows in place) as onnx/style_table.npy, so the box's onnxruntime
    path blends styles without torch. Returns its manifest entry (file, sha256, the styles in it)."""
    path = out / STYLE_TABLE_FILE
    table = bundle.model.style_table.detach().cpu().numpy().astype(np.float32)
    write_atomically_with(path, lambda fh: np.save(fh, table), mode=MODEL_FILE_MODE)
    return {"file": path.resolve().relative_to(Path(model_dir).resolve()).as_posix(),
            "sha256": sha256_of(path), "styles": [s.name for s in bundle.styles]}


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:
        return "unknown"


def _shape(v: dict) -> str:
    return f"{v['name']} {v['dtype']}({','.join(str(s) for s in v['shape'])})"


def run_export(args) -> int:
    if args.verify:
        problems = verify_graphs(args.model)
        if args.json:
            print(json.dumps({"model": str(args.model), "ok": not problems, "problems": problems}, indent=2))
        else:
            for p in problems:
                print(f"problem: {p}", file=sys.stderr)
            print(f"{args.model}: graphs {'OK' if not problems else 'NOT OK'}")
        return 0 if not problems else 1
    try:
        summary = export_model(args.model, args.out, args.opset, args.exporter, args.tolerance)
    except (ExportError, ModelFileError) as exc:
        print(f"sideman-train export: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for g in summary["graphs"]:
            print(f"{g['name']:14s} {g['bytes'] / 1e6:8.2f} MB  in: {', '.join(_shape(v) for v in g['inputs'])}")
            print(f"{'':14s} {'':11s}  out: {', '.join(_shape(v) for v in g['outputs'])}")
        t = summary["timing"]
        print(f"export {t['export_total_s']:.1f} s ({summary['exporter']}, opset {summary['opset']}), "
              f"parity {t['parity_s']:.1f} s, onnxruntime step {t['ort_step_ms']:.2f} ms (CPU, 1 thread)")
        print(f"max abs difference vs PyTorch: {summary['max_abs_diff']:.2e} (tolerance {summary['tolerance']:g})")
        if summary["outside_model_folder"]:
            print(f"note: {summary['out']} is outside the model folder: manifest.json not updated")
    if not summary["passed"]:
        print(f"sideman-train export: parity FAILED (max abs difference {summary['max_abs_diff']:.3g} > "
              f"{summary['tolerance']:g}); graphs left in {summary['out']}, manifest unchanged", file=sys.stderr)
        return 1
    return 0


def add_commands(subparsers) -> None:
    export = subparsers.add_parser(
        "export", help="static-shape ONNX graphs of a transformer model for the box's TensorRT build",
        description="Export a transformer model folder to static-shape ONNX graphs (init, step, field heads), "
                    "check them, compare them with PyTorch under onnxruntime and list them in the "
                    "folder's manifest.json for the box's first-boot TensorRT build.")
    export.add_argument("--model", type=Path, required=True, help="model folder (manifest.json + weights.pt)")
    export.add_argument("--out", type=Path, default=None, help="folder for the graphs (default MODEL/onnx)")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET}: TensorRT 8.6 on JetPack 6.0 reads up to 17)")
    export.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                        help="torch.onnx exporter (auto: torchscript below opset 18, dynamo from 18)")
    export.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest max-abs difference vs PyTorch that passes (default {TOLERANCE:g})")
    export.add_argument("--verify", action="store_true",
                        help="only check the listed graphs against the manifest (files, sha256)")
    export.add_argument("--json", action="store_true", help="print the summary as JSON")
    export.set_defaults(run=run_export)
