"""`sideman-bench reaction`: the session's decision to answer → the first AI note on the wire.

A probe plays short phrases into a box (in this process, on a private JACK dummy server at the
given period); the call-response session answers each one the moment it decides the phrase has
ended (answers are not put on the beat grid here, so the decision is the note's due time). The
first AI note-on's arrival at a JACK receiver minus the session's decision time is the reaction
latency. The phrase's own notes coming back through thru are the baseline measured side by side:
the floor any MIDI event on this server pays."""

from __future__ import annotations

import os
import time

from sideman_bench.probe import JackProbe
from sideman_bench.stats import box_cpu_seconds, peak_rss_mb, summary_ms
from sideman.box import Box, BoxConfig
from sideman.clock import NS_PER_S, now_ns
from sideman.ports.jack_server import DummyJackServer
from sideman.ports.contract import PortError
from sideman.play.voices import make_voice

PHRASE = (60, 64, 67, 71)
NOTE_S = 0.06


def run_reaction_bench(phrases: int = 100, period: int = 64, rate: int = 48000, seed: int = 1,
                       voice: str = "transformer", model_backend: str = "auto") -> dict:
    with DummyJackServer(name=f"sideman-reaction-{os.getpid()}", rate=rate, period=period):
        session = make_voice(voice, "call-response", seed=seed, answer_on_grid=False, model_backend=model_backend)
        box = Box(BoxConfig(backend="jack", autoconnect="", capture=False), voice=session,
                  announce=lambda text: None)
        box.start()
        probe = None
        try:
            probe = JackProbe("bench")
            arrivals, lock = probe.arrivals, probe.lock
            time.sleep(0.3)
            ai_status = 0x90 | box.ai_channel
            box.scheduler.timing_errors_ns.clear()
            box.scheduler.immediate_delays_ns.clear()
            cpu_start, process_start, wall_start = box_cpu_seconds(), time.process_time(), time.monotonic()
            reactions, thru, missed = [], [], 0
            for i in range(phrases):
                sent = {}
                for pitch in PHRASE:
                    message = (0x90, pitch, 40 + i % 80)
                    sent[message] = now_ns()
                    probe.send(message)
                    time.sleep(NOTE_S)
                    probe.send((0x80, pitch, 0))
                phrase_done = now_ns()
                answer = _wait_for(arrivals, lock, lambda t, m: t > phrase_done and m[0] == ai_status and m[2] > 0)
                if answer is None:
                    missed += 1
                    continue
                decided = [a.decided_s for a in session.log.answers if a.decided_s * NS_PER_S <= answer[0]]
                if decided:
                    reactions.append(answer[0] - int(decided[-1] * NS_PER_S))
                with lock:
                    for t, m in arrivals:
                        if m in sent and t >= sent[m]:
                            thru.append(t - sent.pop(m))
                time.sleep(0.05)  # the next phrase barges into this answer (its hush is exercised too)
            wall = time.monotonic() - wall_start
            box_cpu_share = (box_cpu_seconds() - cpu_start) / wall
            process_cpu_share = (time.process_time() - process_start) / wall
            timing_errors = list(box.scheduler.timing_errors_ns)
            immediate = list(box.scheduler.immediate_delays_ns)
        finally:
            # The box first: its patched thru looks at the probe's ports every 20 ms, and the fifth
            # of five `make bench` runs crashed (SIGSEGV) as the probe closed them under that look.
            box.stop()
            if probe is not None:
                probe.close()
    if not reactions:
        raise PortError("no answers arrived: the session did not react to any phrase")
    return {
        "bench": "reaction",
        "definition": "session decides the phrase has ended -> first AI note-on arrives over JACK",
        "jack_period_frames": period, "rate_hz": rate,
        "period_ms": round(period / rate * 1000, 3),
        "phrases": phrases, "answers_measured": len(reactions), "missed": missed,
        "reaction": summary_ms(reactions),
        "voice": session.improviser.name,
        "baseline_thru": summary_ms(thru),
        # AI messages handed to the scheduler ahead of their time: actual send − scheduled time.
        "timing_error": summary_ms(timing_errors),
        # Those due at once when handed over (an answer's first note): send − due.
        "immediate_send_delay": summary_ms(immediate),
        # CPU over the run as a share of one core: the box's Python threads (engine with the
        # voice, sender, MIDI input, hot-plug), and the whole process (an upper bound: it also
        # counts the probe's busy-polling receiver and every JACK client thread).
        "box_cpu_share_of_one_core": round(box_cpu_share, 3),
        "process_cpu_share_of_one_core": round(process_cpu_share, 3),
        "peak_rss_mb": peak_rss_mb(),
        "p99_minus_thru_p99_ms": round(summary_ms(reactions)["p99_ms"] - summary_ms(thru)["p99_ms"], 3) if thru else None,
        "target_p99_ms": 10.0,
    }


def _wait_for(arrivals, lock, predicate, timeout_s: float = 3.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with lock:
            for t, m in arrivals:
                if predicate(t, m):
                    return t, m
        time.sleep(0.002)
    return None
