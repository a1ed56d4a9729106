"""`sideman bench thru`: what the box adds to a MIDI thru path, against a direct JACK connection.

One probe port sends each note to two places at once (JACK fans an output out to several inputs):
straight to a receiver ("direct"), and into a running `sideman run` whose output goes to a second
receiver ("via sideman"). The same note's two arrival times give the added latency per note, so the
baseline and the box are measured side by side, in the same JACK cycles.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import rtmidi

from sideman.bench.stats import percentile, summary_ms
from sideman.clock import now_ns
from sideman.ports.contract import PortError
from sideman.ports.jack_server import DummyJackServer


def _jack_connect(source: str, destination: str) -> None:
    subprocess.run(["jack_connect", source, destination], check=True, stdout=subprocess.DEVNULL)


def _start_box(env: dict) -> subprocess.Popen:
    box = subprocess.Popen(
        [sys.executable, "-m", "sideman", "run", "--backend", "jack", "--no-autoconnect",
         "--voice", "none", "--no-capture", "--synth", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in box.stdout:
        if line.startswith("ready"):
            return box
    raise PortError("sideman run did not get ready for the benchmark")


def run_thru_bench(notes: int = 2000, period: int = 64, rate: int = 48000, seed: int = 1) -> dict:
    rng = random.Random(seed)
    arrivals: dict[str, dict[tuple, int]] = {"direct": {}, "via": {}}
    lock = threading.Lock()

    def receiver(path: str):
        def on_message(event, _data):
            t = now_ns()
            with lock:
                arrivals[path].setdefault(tuple(event[0]), t)
        return on_message

    with DummyJackServer(name=f"sideman-bench-{os.getpid()}", rate=rate, period=period) as server:
        env = dict(os.environ, JACK_DEFAULT_SERVER=server.name)
        box = _start_box(env)
        try:
            source = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "bench-src")
            source.open_virtual_port("out")
            sinks = {}
            for path in ("direct", "via"):
                sinks[path] = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, f"bench-{path}")
                sinks[path].open_virtual_port("in")
                sinks[path].set_callback(receiver(path))
            _jack_connect("bench-src:out", "bench-direct:in")
            _jack_connect("bench-src:out", "sideman:in")
            _jack_connect("sideman-out:out", "bench-via:in")
            time.sleep(0.2)
            sent: dict[tuple, int] = {}
            for i in range(notes):
                # Every message unique (pitch × velocity) so its two arrivals pair up exactly.
                message = (0x90, i % 128, 1 + (i // 128) % 127)
                sent[message] = now_ns()
                source.send_message(message)
                time.sleep(rng.uniform(0.002, 0.006))  # random phase against the JACK cycle
            time.sleep(0.2)
            for sink in sinks.values():
                sink.cancel_callback()
                sink.delete()
            source.delete()
        finally:
            box.terminate()
            box.wait(timeout=10)

    with lock:
        direct, via = dict(arrivals["direct"]), dict(arrivals["via"])
    paired = [m for m in sent if m in direct and m in via]
    added = [via[m] - direct[m] for m in paired]
    added_summary = summary_ms(added)
    period_ms = 1000.0 * period / rate
    added_ms = [a / 1e6 for a in added]
    jitter_ms = round(percentile(added_ms, 99) - percentile(added_ms, 50), 4) if added else None
    return {
        "benchmark": "thru",
        "jack_period_frames": period, "sample_rate": rate, "jack_period_ms": round(period_ms, 4),
        "notes_sent": notes, "lost_direct": notes - len(direct), "lost_via_sideman": notes - len(via),
        "direct_latency": summary_ms([direct[m] - sent[m] for m in direct]),
        "via_sideman_latency": summary_ms([via[m] - sent[m] for m in via]),
        "added_latency": added_summary,
        "added_jitter_p99_minus_p50_ms": jitter_ms,
        "goal_added_p99_ms": round(period_ms + 0.5, 4), "goal_jitter_ms": 0.3,
        "meets_goal": bool(added) and added_summary["p99_ms"] <= period_ms + 0.5 and jitter_ms <= 0.3,
    }

