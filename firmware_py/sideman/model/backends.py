"""Where the transformer's numbers are computed: one small interface, several backends.

    torch   the nn.Module on the CPU: always there when torch is
    onnx    the graphs from `sideman-train export` under onnxruntime: on this 2-core CPU about
            twice as fast per event as torch (`sideman-bench model` measures both)
    tensorrt  the same graphs under onnxruntime's TensorRT execution provider (onnxruntime-gpu on
            the Jetson): auto picks it when that provider exists. Written, not yet run: no GPU
            has been lent to this project (the CPU path is what the tests and benchmarks cover).

The live stream above calls only `step` (one event through the static KV cache, returning the
backbone state, the AI's time logits and the human's: when the player is likely to play again), the three field heads, and `prefill` (a whole history
at once, for re-priming when the cache slides). Everything goes in and out as numpy, so sampling
does not care which backend runs. A cache is whatever the backend keeps; a step never writes into
the cache it was given (it returns a new one), so holding on to an old cache *is* a rollback.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sideman.model.conditioning import PULSE_DIM, as_pulse
from sideman.model.events import AI, HUMAN
from sideman.model.model_files import GRAPH_NAMES

BACKEND_NAMES = ("auto", "torch", "onnx", "tensorrt")
TENSORRT_PROVIDER = "TensorrtExecutionProvider"


class BackendError(Exception):
    """A backend that cannot run here (missing package or graphs); the message says what."""


class StepOutput(NamedTuple):
    h: np.ndarray            # (D,) backbone state predicting the next event
    time_logits: np.ndarray  # (27,) the AI's time-field logits from that state
    cache: object            # the backend's KV cache after this step
    human_time_logits: np.ndarray   # (27,) the same for the human: when the player plays again


class History(NamedTuple):
    """A context to prefill: events[i] is fed at position i+1 (position 0 is the beginning
    marker), conditioned on chord[i+1] / pulse[i+1]; chord[0] / pulse[0] go with the marker."""
    events: np.ndarray       # (n, 5) int64: time, pitch, duration, velocity, voice
    chord: np.ndarray        # (n+1, 12) float32
    pulse: np.ndarray        # (n+1, PULSE_DIM) float32 (conditioning.pulse_features)
    mode: int
    style_vector: np.ndarray  # (D,)


class ModelBackend:
    name = "?"
    context: int
    d_model: int

    def empty_cache(self):
        raise NotImplementedError

    def step(self, previous, style_vector: np.ndarray, mode: int, chord: np.ndarray, pulse: np.ndarray,
             position: int, cache) -> StepOutput:
        """previous: (time, pitch, duration, velocity, voice) of the event fed, or None for the
        beginning marker; pulse (PULSE_DIM,) (a model trained without the beat input reads its
        first number, the tempo)."""
        raise NotImplementedError

    def pitch_logits(self, h: np.ndarray, voice: int, time_bin: int) -> np.ndarray:
        raise NotImplementedError

    def duration_logits(self, h: np.ndarray, voice: int, time_bin: int, pitch: int) -> np.ndarray:
        raise NotImplementedError

    def velocity_logits(self, h: np.ndarray, voice: int, time_bin: int, pitch: int, duration_bin: int) -> np.ndarray:
        raise NotImplementedError

    def prefill(self, history: History) -> StepOutput:
        """The state after the marker and every event of the history, as `step` would leave it
        (to float rounding), in one call. The default steps through it."""
        cache = self.empty_cache()
        out = self.step(None, history.style_vector, history.mode, history.chord[0], history.pulse[0], 0, cache)
        for i, event in enumerate(history.events):
            out = self.step(tuple(int(x) for x in event), history.style_vector, history.mode,
                            history.chord[i + 1], history.pulse[i + 1], i + 1, out.cache)
        return out

    def warm_up(self, steps: int = 24) -> float:
        """Run a few events through every graph (first calls allocate and pick kernels), so the
        first answer is as fast as the rest. Returns the seconds it took."""
        start = time.perf_counter()
        steps = min(steps, self.context - 1)   # positions and a prefill of `steps` events fit the cache
        zeros = np.zeros(12, dtype=np.float32)
        no_pulse = np.zeros(PULSE_DIM, dtype=np.float32)
        style = np.zeros(self.d_model, dtype=np.float32)
        out = self.step(None, style, 0, zeros, no_pulse, 0, self.empty_cache())
        for i in range(1, steps):
            out = self.step((3, 60, 4, 8, AI), style, 1, zeros, no_pulse, i, out.cache)
            self.pitch_logits(out.h, AI, 3)
            self.duration_logits(out.h, AI, 3, 60)
            self.velocity_logits(out.h, AI, 3, 60, 4)
        history = History(np.tile(np.array([[3, 60, 4, 8, AI]], dtype=np.int64), (steps, 1)),
                           np.zeros((steps + 1, 12), np.float32), np.zeros((steps + 1, PULSE_DIM), np.float32),
                           1, style)
        self.prefill(history)
        return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------


class TorchBackend(ModelBackend):
    name = "torch"

    def __init__(self, model, threads: int | None = 1):
        import torch

        self.torch = torch
        if threads:
            # One thread: at batch 1 more threads only add hand-offs (and the box has other work).
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.context = model.config.context
        self.d_model = model.config.d_model
        with torch.no_grad():
            self._voice_out = model.voice_out.weight.clone()

    def empty_cache(self):
        return self.model.empty_cache()

    def step(self, previous, style_vector, mode, chord, pulse, position, cache) -> StepOutput:
        torch = self.torch
        k, v = cache
        with torch.inference_mode():
            prev = torch.tensor([previous if previous is not None else (0, 0, 0, 0, 0)], dtype=torch.long)
            begin = torch.tensor([1.0 if previous is None else 0.0])
            h, k, v = self.model.step(prev, begin, torch.from_numpy(np.asarray(style_vector, np.float32))[None],
                                      torch.tensor([mode]), torch.from_numpy(np.asarray(chord, np.float32))[None],
                                      _pulse_row(pulse, torch), torch.tensor(position), k, v)
            time_logits = self.model.time_head(torch.stack([h[0] + self._voice_out[AI], h[0] + self._voice_out[HUMAN]]))
        return StepOutput(h[0].numpy(), time_logits[0].numpy(), (k, v), time_logits[1].numpy())

    def _head(self, head, h, voice, *chosen):
        torch = self.torch
        with torch.inference_mode():
            state = torch.from_numpy(h)[None] + self._voice_out[voice]
            return head(state, *(torch.tensor([c]) for c in chosen))[0].numpy()

    def pitch_logits(self, h, voice, time_bin):
        return self._head(self.model.pitch_head, h, voice, time_bin)

    def duration_logits(self, h, voice, time_bin, pitch):
        return self._head(self.model.duration_head, h, voice, time_bin, pitch)

    def velocity_logits(self, h, voice, time_bin, pitch, duration_bin):
        return self._head(self.model.velocity_head, h, voice, time_bin, pitch, duration_bin)

    def prefill(self, history: History) -> StepOutput:
        """forward() over the marker and all but the last event, then one step with the last."""
        torch = self.torch
        n = len(history.events)
        if n == 0:
            return super().prefill(history)
        with torch.inference_mode():
            ev = torch.from_numpy(np.asarray(history.events, dtype=np.int64))
            batch = {name: ev[None, :, i] for i, name in enumerate(("time", "pitch", "duration", "velocity", "voice"))}
            batch.update(chord=torch.from_numpy(np.asarray(history.chord[:n], np.float32))[None],
                         pulse=torch.from_numpy(np.asarray(history.pulse[:n], np.float32))[None],
                         mode=torch.tensor([history.mode]),
                         style_vector=torch.from_numpy(np.asarray(history.style_vector, np.float32))[None])
            _, k_seq, v_seq = self.model(batch, return_cache=True)
            k, v = self.model.empty_cache()
            k[:, :, :, :n] = k_seq
            v[:, :, :, :n] = v_seq
        return self.step(tuple(int(x) for x in history.events[-1]), history.style_vector, history.mode,
                         history.chord[n], history.pulse[n], n, (k, v))


def _pulse_row(pulse, torch):
    """(1, PULSE_DIM) tensor of a pulse (or of a bare tempo feature)."""
    return torch.from_numpy(as_pulse(pulse))[None]


class OnnxBackend(ModelBackend):
    name = "onnx"

    def __init__(self, folder: Path, graphs: dict[str, str], context: int, d_model: int, threads: int = 1,
                 tensorrt: bool = False):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("onnxruntime is not installed (pip install onnxruntime)") from None
        providers: list = ["CPUExecutionProvider"]
        if tensorrt:
            # onnxruntime's TensorRT execution provider (onnxruntime-gpu for JetPack) builds fp16
            # TensorRT engines from the same graphs and caches them (the first start after an upgrade is
            # the slow one). Not run in this project yet: no GPU has been lent to it.
            if TENSORRT_PROVIDER not in ort.get_available_providers():
                raise BackendError("this onnxruntime has no TensorRT execution provider "
                                   "(install onnxruntime-gpu built for JetPack)")
            from sideman.paths import data_dir

            cache = data_dir() / "engines" / "onnxruntime"
            cache.mkdir(parents=True, exist_ok=True)
            providers = [(TENSORRT_PROVIDER, {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                              "trt_engine_cache_path": str(cache)}),
                         "CUDAExecutionProvider", "CPUExecutionProvider"]
            self.name = "onnx-tensorrt"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.sessions = {}
        for name in GRAPH_NAMES:
            path = Path(folder) / graphs.get(name, f"onnx/{name}.onnx")
            if not path.is_file():
                raise BackendError(f"{path}: missing (run `sideman-train export --model {folder}`)")
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own types for corrupt graphs
                raise BackendError(f"{path}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from None
        self.context = context
        self.d_model = d_model
        self._shape = self._input_shape("step", "k_cache")
        self._pulse_dim = self._input_shape("step", "pulse")[-1]
        # Reused input arrays: a step allocates only what onnxruntime returns.
        self._previous = np.zeros((1, 5), np.int64)
        self._begin = np.zeros(1, np.float32)
        self._mode = np.zeros(1, np.int64)
        self._position = np.zeros(1, np.int64)
        self._pulse = np.zeros((1, self._pulse_dim), np.float32)
        self._one = {n: np.zeros(1, np.int64) for n in ("voice", "time", "pitch", "duration")}

    def _input_shape(self, graph: str, name: str) -> tuple[int, ...]:
        for value in self.sessions[graph].get_inputs():
            if value.name == name:
                return tuple(int(n) for n in value.shape)
        raise BackendError(f"{graph} graph has no {name} input (export it again: `sideman-train export`)")

    def empty_cache(self):
        return np.zeros(self._shape, np.float32), np.zeros(self._shape, np.float32)

    def step(self, previous, style_vector, mode, chord, pulse, position, cache) -> StepOutput:
        k, v = cache
        if previous is None:
            self._previous[0] = 0
            self._begin[0] = 1.0
        else:
            self._previous[0] = previous
            self._begin[0] = 0.0
        self._mode[0] = mode
        self._position[0] = position
        self._pulse[0] = as_pulse(pulse)[:self._pulse_dim]
        h, time_logits, human_time_logits, k, v = self.sessions["step"].run(None, {
            "previous": self._previous, "begin": self._begin,
            "style_vector": np.asarray(style_vector, np.float32).reshape(1, -1), "mode": self._mode,
            "chord": np.asarray(chord, np.float32).reshape(1, 12), "pulse": self._pulse,
            "position": self._position, "k_cache": k, "v_cache": v})
        return StepOutput(h[0], time_logits[0], (k, v), human_time_logits[0])

    def _head(self, name, h, **chosen):
        feeds = {"h": h.reshape(1, -1)}
        for key, value in chosen.items():
            array = self._one[key]
            array[0] = value
            feeds[key] = array
        return self.sessions[name].run(None, feeds)[0][0]

    def pitch_logits(self, h, voice, time_bin):
        return self._head("pitch_head", h, voice=voice, time=time_bin)

    def duration_logits(self, h, voice, time_bin, pitch):
        return self._head("duration_head", h, voice=voice, time=time_bin, pitch=pitch)

    def velocity_logits(self, h, voice, time_bin, pitch, duration_bin):
        return self._head("velocity_head", h, voice=voice, time=time_bin, pitch=pitch, duration=duration_bin)

    def prefill(self, history: History) -> StepOutput:
        """The init graph (static length: padded; causal, so the padding changes nothing before
        it) over the marker and all but the last event, then one step with the last."""
        n = len(history.events)
        if n == 0 or n >= self.context:
            return super().prefill(history)
        pad = self.context
        fields = np.zeros((5, 1, pad), np.int64)
        fields[:, 0, :n] = np.asarray(history.events, np.int64).T
        chord = np.zeros((1, pad, 12), np.float32)
        chord[0, :n] = history.chord[:n]
        pulse = np.zeros((1, pad, self._pulse_dim), np.float32)
        pulse[0, :n] = np.asarray(history.pulse, np.float32)[:n, :self._pulse_dim]
        _, k, v = self.sessions["init"].run(None, {
            "time": fields[0], "pitch": fields[1], "duration": fields[2], "velocity": fields[3],
            "voice": fields[4], "chord": chord, "pulse": pulse, "mode": np.array([history.mode], np.int64),
            "style_vector": np.asarray(history.style_vector, np.float32).reshape(1, -1)})
        return self.step(tuple(int(x) for x in history.events[-1]), history.style_vector, history.mode,
                         history.chord[n], history.pulse[n], n, (k, v))


def graph_files(bundle) -> dict[str, str]:
    """Graph name -> file under the model folder (an OnnxBundle has them checked already)."""
    graphs = getattr(bundle, "graphs", None)
    if isinstance(graphs, dict):
        return graphs
    return {g["name"]: g["onnx"] for g in bundle.manifest.get("graphs", [])
            if isinstance(g, dict) and "name" in g and "onnx" in g}


def tensorrt_available() -> bool:
    """onnxruntime with its TensorRT execution provider (the box's GPU path)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    return TENSORRT_PROVIDER in ort.get_available_providers()


def onnx_available(bundle) -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    graphs = graph_files(bundle)
    return all(graphs.get(name) and (bundle.path / graphs[name]).is_file() for name in GRAPH_NAMES)


def open_backend(bundle, kind: str = "auto") -> ModelBackend:
    """The backend `kind` over a loaded bundle (a torch Bundle, or an OnnxBundle for onnx).
    auto: the exported graphs under onnxruntime when they and onnxruntime are there (on its
    TensorRT provider when it has one, the box; else on the CPU, the faster one here, measured),
    else torch."""
    if kind not in BACKEND_NAMES:
        raise BackendError(f"unknown model backend {kind!r} (choose from {', '.join(BACKEND_NAMES)})")
    if kind == "tensorrt" or (kind == "auto" and onnx_available(bundle) and tensorrt_available()):
        return OnnxBackend(bundle.path, graph_files(bundle), bundle.context, bundle.d_model, tensorrt=True)
    if kind == "onnx" or (kind == "auto" and onnx_available(bundle)):
        return OnnxBackend(bundle.path, graph_files(bundle), bundle.context, bundle.d_model)
    if not hasattr(bundle, "model"):
        raise BackendError("the torch backend needs the model's weights (load_bundle, not load_onnx_bundle)")
    return TorchBackend(bundle.model)
