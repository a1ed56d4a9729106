"""`sideman-bench duet`: what the box costs while it duets. A probe plays a line (made in code:
a stepwise C-major line in mixed rhythm with rests, 120 BPM) into a box on a private JACK dummy
server, in real time, for `seconds`; the box plays along (duet mode) on its AI channel. Measured
over the run:

    box_cpu_share_of_one_core   CPU of the box's Python threads (engine with the voice, sender,
                                MIDI input, hot-plug) / wall time
    timing_error                AI messages handed to the scheduler ahead of their time:
                                actual send − scheduled time
    peak_rss_mb                 this process (box + probe)
    stuck_notes                 AI note-ons without a note-off once the box has stopped

The same run with the Markov voice is the baseline, side by side."""

from __future__ import annotations

import os
import time

import numpy as np

from sideman_bench.probe import JackProbe
from sideman_bench.stats import box_cpu_seconds, peak_rss_mb, summary_ms
from sideman.box import Box, BoxConfig
from sideman.controls import CONTROLS
from sideman.ports.jack_server import DummyJackServer
from sideman.play.voices import make_voice


def practice_line(seconds: float, seed: int = 0) -> list[tuple[float, int, int, float]]:
    """(onset, pitch, velocity, duration): phrases of 2-4 bars at 120 BPM with a bar of rest."""
    rng = np.random.default_rng(seed)
    scale = [p for p in range(60, 85) if p % 12 in (0, 2, 4, 5, 7, 9, 11)]
    notes, t, i = [], 0.0, len(scale) // 2
    while t < seconds:
        phrase_end = t + float(rng.choice([4.0, 6.0, 8.0]))
        while t < min(phrase_end, seconds):
            i = int(min(len(scale) - 1, max(0, i + rng.choice([-2, -1, 1, 1, 2]))))
            step = float(rng.choice([0.25, 0.25, 0.5, 0.75]))
            notes.append((t, scale[i], int(rng.integers(55, 95)), step * 0.8))
            t += step
        t += 2.0
    return notes


def _one_run(voice: str, seconds: float, seed: int, model_backend: str) -> dict:
    controls = {c.name: c.default for c in CONTROLS}
    session = make_voice(voice, "duet", controls=controls, seed=seed, model_backend=model_backend)
    box = Box(BoxConfig(backend="jack", autoconnect="", capture=False, mode="duet"), voice=session,
              announce=lambda text: None)
    box.start()
    probe = None
    try:
        probe = JackProbe("duet", poll_s=0.001)
        time.sleep(0.3)
        box.scheduler.timing_errors_ns.clear()
        events = []
        for onset, pitch, velocity, duration in practice_line(seconds, seed):
            events.append((onset, (0x90, pitch, velocity)))
            events.append((onset + duration, (0x80, pitch, 0)))
        events.sort(key=lambda e: e[0])
        cpu_start, process_start, start = box_cpu_seconds(), time.process_time(), time.monotonic()
        for at, message in events:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            probe.send(message)
        time.sleep(1.0)
        wall = time.monotonic() - start
        cpu = (box_cpu_seconds() - cpu_start) / wall
        process_cpu = (time.process_time() - process_start) / wall
        timing = list(box.scheduler.timing_errors_ns)
        status = getattr(session.improviser, "status", None)
    finally:
        box.stop()
        if probe is not None:
            time.sleep(0.3)   # the box's last note-offs arrive
            received = probe.messages()
            probe.close()
    ai_on, ai_off = 0x90 | box.ai_channel, 0x80 | box.ai_channel
    sounding: dict[int, int] = {}
    for m in received:
        if m[0] == ai_on and m[2] > 0:
            sounding[m[1]] = sounding.get(m[1], 0) + 1
        elif (m[0] == ai_off or (m[0] == ai_on and m[2] == 0)) and sounding.get(m[1]):
            sounding[m[1]] -= 1
    return {"voice": session.improviser.name, "seconds": round(wall, 1),
            "human_notes": sum(1 for _, m in events if m[0] == 0x90),
            "ai_notes": sum(1 for m in received if m[0] == ai_on and m[2] > 0),
            "box_cpu_share_of_one_core": round(cpu, 3), "process_cpu_share_of_one_core": round(process_cpu, 3),
            "timing_error": summary_ms(timing), "peak_rss_mb": peak_rss_mb(),
            "engine_dropped_events": box.engine.dropped, "voice_errors": box.engine.voice_errors,
            "stuck_notes": sum(sounding.values()), "voice_status": status}


def run_duet_bench(seconds: float = 30.0, seed: int = 0, model_backend: str = "auto", period: int = 64,
                   rate: int = 48000) -> dict:
    with DummyJackServer(name=f"sideman-duet-{os.getpid()}", rate=rate, period=period):
        runs = [_one_run("transformer", seconds, seed, model_backend), _one_run("markov", seconds, seed, model_backend)]
    return {"bench": "duet", "definition": "a probe plays a line for SECONDS in real time; the box duets over JACK",
            "jack_period_frames": period, "transformer": runs[0], "baseline_markov": runs[1],
            "targets": {"box_cpu_share_of_one_core": 0.5, "timing_error_p99_ms": 1.0, "peak_rss_mb": 400.0}}
