"""`sideman-bench model`: the transformer's per-event cost on each backend, side by side, each in a
fresh process (so its start-up time and peak memory are its own), with the Markov voice's per-event
cost as the baseline measured in the same run.

    ready        process start → model loaded, backend opened and warmed up (what the box waits
                 for before it reports READY)
    event        one generated AI event at batch 1 with the KV cache: time, pitch, duration and
                 velocity sampled with steering, then the step that feeds it back (the live path)
    step         the backend's step alone (event minus heads and sampling)
    rtf          seconds of music generated per second of compute, generating continuously
                 (cache slides included)
    peak_rss_mb  the process's peak resident memory
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from sideman_bench.stats import peak_rss_mb, summary_ms

WARM_UP_EVENTS = 50   # the first events (caches, allocator) are left out of the figures

EVENTS = 2000


def measure_backend(kind: str, events: int = EVENTS, started: float | None = None) -> dict:
    """Runs in the child process: load, warm up, then generate `events` events continuously."""
    started = started if started is not None else time.perf_counter()
    import numpy as np

    from sideman.controls import CONTROLS
    from sideman.model.markov import load_style
    from sideman.paths import models_dir
    from sideman.play.improviser import MarkovImproviser
    from sideman.play.live_transformer import Plan, TransformerImproviser
    from sideman.play.request import ANSWER, PlayRequest
    from sideman.play.steering import Steering
    from sideman.play.voices import open_model

    # As the box opens it: onnx reads the exported graphs without torch, torch the weights.
    bundle, backend = open_model(models_dir() / "transformer", kind)
    backend.warm_up()
    ready_s = time.perf_counter() - started

    step_ns: list[int] = []
    inner_step = backend.step

    def timed_step(*args):
        t0 = time.perf_counter_ns()
        out = inner_step(*args)
        step_ns.append(time.perf_counter_ns() - t0)
        return out
    backend.step = timed_step

    markov = load_style("mehldau")
    voice = TransformerImproviser(bundle, backend, MarkovImproviser({"mehldau": markov}), step_budget_s=None)
    steering = Steering.from_controls({c.name: c.default for c in CONTROLS}, ("mehldau",))
    rng = np.random.default_rng(0)
    style = voice.style_vector(steering)
    voice.context.start(style, 1, 0.0)
    # A long answer in the middle register: the plan never ends during the run.
    request = PlayRequest(ANSWER, 0.0, 1e9, (36, 96), (), 0.5)
    plan = Plan(voice, request, steering, None, rng)
    voice.plans = [plan]
    event_ns = []
    step_ns.clear()
    compute_start = time.perf_counter()
    first_onset = None
    for _ in range(events):
        t0 = time.perf_counter_ns()
        voice.sample_for(plan, voice.context.last_onset_s or 0.0)
        voice.pop_for(plan)     # played at once: generation never waits on the clock
        event_ns.append(time.perf_counter_ns() - t0)
        first_onset = voice.context.committed[-1].onset_s if first_onset is None else first_onset
    compute_s = time.perf_counter() - compute_start
    music_s = voice.context.committed[-1].onset_s - first_onset
    result = {
        "backend": backend.name, "ready_s": round(ready_s, 3), "events": events,
        "event": summary_ms(event_ns[WARM_UP_EVENTS:]), "step": summary_ms(step_ns[WARM_UP_EVENTS:]),
        "rtf": round(music_s / compute_s, 1), "music_s": round(music_s, 1), "compute_s": round(compute_s, 3),
        "cache_slides": voice.context.slides, "peak_rss_mb": peak_rss_mb(),
        "torch_loaded": "torch" in sys.modules,
    }
    # The baseline in the same process: the Markov voice drawing one event.
    model = markov
    history = [(5, 60, 6, 8)] * 8
    markov_ns = []
    for _ in range(500):
        t0 = time.perf_counter_ns()
        event = model.sample(history, rng, allow_pedal=False)
        markov_ns.append(time.perf_counter_ns() - t0)
        history.append(event)
    result["markov_event"] = summary_ms(markov_ns[WARM_UP_EVENTS:])
    return result


def run_model_bench(backends: tuple[str, ...] = ("torch", "onnx"), events: int = EVENTS) -> dict:
    """Each backend in its own process (its own start-up and memory), one after the other."""
    rows = []
    for kind in backends:
        code = ("import time; t=time.perf_counter(); import json, sys; "
                "from sideman_bench.model import measure_backend; "
                f"print(json.dumps(measure_backend({kind!r}, {int(events)}, t)))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if run.returncode != 0:
            rows.append({"backend": kind, "error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed"})
            continue
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    ok = [r for r in rows if "error" not in r]
    report = {"bench": "model", "definition": __doc__.split("\n\n")[0].replace("\n", " "),
              "cpu_count": os.cpu_count(), "backends": rows,
              "targets": {"event_p99_ms": 5.0, "rtf": 50.0, "peak_rss_mb": 400.0, "ready_s": 5.0}}
    if len(ok) >= 2:
        base = ok[0]
        report["ratios_vs_" + base["backend"]] = {
            r["backend"]: {"event_p50": round(r["event"]["p50_ms"] / base["event"]["p50_ms"], 3),
                           "rtf": round(r["rtf"] / base["rtf"], 3)} for r in ok[1:]}
    return report
