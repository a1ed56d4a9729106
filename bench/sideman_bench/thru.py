"""`sideman-bench thru`: what the box adds to a MIDI thru path, against a direct JACK connection.

One probe port sends each note to two places at once (JACK fans an output out to several inputs):
straight to a receiver ("direct"), and into a running `sideman run` whose output goes to a second
receiver ("via sideman"). The same note's two arrival times give the added latency per note, so the
baseline and the box are measured side by side, in the same JACK cycles.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time

import rtmidi

from sideman_bench.probe import SinkPoller
from sideman_bench.stats import percentile, summary_ms
from sideman.clock import now_ns
from sideman.ports.contract import PortError
from sideman.ports.jack_server import DummyJackServer
from sideman.processes import dies_with_parent


def _jack_connect(source: str, destination: str) -> None:
    subprocess.run(["jack_connect", source, destination], check=True, stdout=subprocess.DEVNULL)


def _start_box(env: dict, voice: str = "none", thru: str = "auto") -> subprocess.Popen:
    # KILL, not TERM, when the benchmark dies: the box has nothing left to finish, and a box stuck
    # on its way out keeps its JACK clients, and JACK's shared registry, held (seen here: every
    # later private server failed to open).
    box = subprocess.Popen(dies_with_parent(
        [sys.executable, "-m", "sideman", "run", "--backend", "jack", "--no-autoconnect",
         "--voice", voice, "--no-capture", "--synth", "none", "--thru", thru], signal="KILL"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in box.stdout:
        if line.startswith("ready"):
            return box
    raise PortError("sideman run did not get ready for the benchmark")


def run_thru_bench(notes: int = 2000, period: int = 64, rate: int = 48000, seed: int = 1, thru: str = "auto") -> dict:
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
        box = _start_box(env, thru=thru)
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
        "benchmark": "thru", "thru": thru,
        "jack_period_frames": period, "sample_rate": rate, "jack_period_ms": round(period_ms, 4),
        "notes_sent": notes, "lost_direct": notes - len(direct), "lost_via_sideman": notes - len(via),
        "direct_latency": summary_ms([direct[m] - sent[m] for m in direct]),
        "via_sideman_latency": summary_ms([via[m] - sent[m] for m in via]),
        "added_latency": added_summary,
        "added_jitter_p99_minus_p50_ms": jitter_ms,
        "goal_added_p99_ms": round(period_ms + 0.5, 4), "goal_jitter_ms": 0.3,
        "meets_goal": bool(added) and added_summary["p99_ms"] <= period_ms + 0.5 and jitter_ms <= 0.3,
    }



def answering_phrases(notes: int, seed: int = 1) -> list[tuple[float, tuple, tuple]]:
    """(onset, note-on, note-off): fast 16-note phrases (a note every 80 ms) with a 1.4 s rest
    after each, so the box answers in every rest and the next phrase barges into the answer.
    Every message is unique (pitch x velocity), so its two arrivals pair up exactly."""
    rng = random.Random(seed)
    timed, t = [], 0.3
    for i in range(notes):
        pitch, velocity = 48 + i % 40, 20 + (i // 40) % 100
        timed.append((t, (0x90, pitch, velocity), (0x80, pitch, velocity)))
        t += 0.08 + rng.uniform(-0.01, 0.01)
        if i % 16 == 15:
            t += 1.4
    return timed


def _play_into_box(voice: str, timed: list[tuple[float, tuple]], period: int, rate: int, settle_s: float = 1.0,
                   thru: str = "auto", beside: str | None = None):
    """Send the timed messages (seconds from now) into a `sideman run` with this voice and, at the
    same instants, straight to a second listener, on a fresh JACK server. Returns (send times,
    the listener with both paths' arrivals).

    beside: a voice for a second `sideman run`, in its own process, that hears the same notes and
    answers them (into a third listener): the model's work without its interpreter in the box
    being measured."""
    sent: dict[tuple, int] = {}
    with DummyJackServer(name=f"sideman-bench-{os.getpid()}", rate=rate, period=period) as server:
        env = dict(os.environ, JACK_DEFAULT_SERVER=server.name)
        boxes = [_start_box(env, voice, thru)]
        paths = ("direct", "via", "beside") if beside else ("direct", "via")
        source = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "bench-src")
        # Polled, never called back: a Python callback on JACK's thread deadlocks against a client
        # being closed while this thread holds the interpreter (it hung this benchmark once).
        sinks = {path: rtmidi.MidiIn(rtmidi.API_UNIX_JACK, f"bench-{path}") for path in paths}
        listening = _SinkPoller(sinks)
        said = ""
        try:
            source.open_virtual_port("out")
            for sink in sinks.values():
                sink.open_virtual_port("in")
            listening.start()
            _jack_connect("bench-src:out", "bench-direct:in")
            _jack_connect("bench-src:out", "sideman:in")
            _jack_connect("sideman-out:out", "bench-via:in")
            if beside:
                boxes.append(_start_box(env, beside, "box"))   # JACK names its ports sideman-01:in, ...
                _jack_connect("bench-src:out", "sideman-01:in")
                _jack_connect("sideman-out-01:out", "bench-beside:in")
            time.sleep(0.5)
            start = now_ns()
            for t, message in timed:
                due = start + int(t * 1e9)
                while now_ns() < due:
                    time.sleep(min(0.001, max(0.0, (due - now_ns()) / 1e9)))
                sent[message] = now_ns()
                source.send_message(message)
            time.sleep(settle_s)
        finally:
            for box in boxes:
                box.terminate()  # nothing more arrives while the clients close
            said, _ = boxes[0].communicate(timeout=10)
            for box in boxes[1:]:
                box.communicate(timeout=10)
            listening.stop()
            for client in (*sinks.values(), source):
                client.delete()
    listening.box_said = said
    return sent, listening


def _answering_run(voice: str, notes: int, period: int, rate: int, seed: int, thru: str,
                   beside: str | None = None) -> dict:
    phrases = answering_phrases(notes, seed)
    timed = sorted([(t, on) for t, on, _ in phrases] + [(t + 0.06, off) for t, _, off in phrases],
                   key=lambda item: item[0])
    sent, listening = _play_into_box(voice, timed, period, rate, thru=thru, beside=beside)
    direct, via, ai_note_ons = listening.first_arrivals["direct"], listening.first_arrivals["via"], listening.ai_note_ons
    on_sent = [m for m in sent if m[0] & 0xF0 == 0x90]
    off_sent = [m for m in sent if m[0] & 0xF0 == 0x80]
    paired = [m for m in on_sent if m in direct and m in via]
    added_ms = [(via[m] - direct[m]) / 1e6 for m in paired]
    return {
        "voice": voice, "note_ons_sent": len(on_sent), "ai_note_ons": ai_note_ons,
        "lost_note_ons": {"direct": sum(m not in direct for m in on_sent), "via_sideman": sum(m not in via for m in on_sent)},
        "lost_note_offs": {"direct": sum(m not in direct for m in off_sent), "via_sideman": sum(m not in via for m in off_sent)},
        "added_latency": summary_ms([a * 1e6 for a in added_ms]),
        "added_jitter_p99_minus_p50_ms": round(percentile(added_ms, 99) - percentile(added_ms, 50), 4) if added_ms else None,
    }


class _SinkPoller(SinkPoller):
    """The first arrival of every player message per path, and the AI's note-ons (channel 2)."""

    def __init__(self, sinks: dict, poll_s: float = 0.0002):
        super().__init__(sinks, poll_s)
        self.first_arrivals: dict[str, dict[tuple, int]] = {path: {} for path in sinks}
        self.ai_note_ons = 0
        self.ai_note_on_times: list[int] = []
        self.box_said = ""   # what the box printed after it was ready, up to its exit

    def take(self, path: str, message: tuple, t_ns: int) -> None:
        if len(message) == 3 and message[0] == 0x91 and message[2] > 0:
            self.ai_note_ons += 1
            self.ai_note_on_times.append(t_ns)
        else:
            self.first_arrivals[path].setdefault(message, t_ns)


def run_answering_thru_bench(notes: int = 1008, period: int = 64, rate: int = 48000,
                             voices: tuple[str, ...] = ("transformer", "none"), seed: int = 1,
                             thru: str = "auto", beside: str | None = None) -> dict:
    """Thru while the AI answers: phrases with rests into a box with each voice in turn (a fresh
    JACK server each), the same notes; per voice: lost player notes on each path, added p50/p99
    and jitter. `none` (thru only) is the baseline. beside: see _play_into_box."""
    runs = {voice: _answering_run(voice, notes, period, rate, seed, thru, beside) for voice in voices}
    result = {"benchmark": "thru-answering", "thru": thru, "voice_beside": beside, "jack_period_frames": period, "sample_rate": rate, "runs": runs}
    if "none" in runs and len(runs) > 1:
        base = runs["none"]["added_latency"]["p99_ms"]
        result["added_p99_over_voice_none_ms"] = {v: round(r["added_latency"]["p99_ms"] - base, 4)
                                                  for v, r in runs.items() if v != "none" and r["added_latency"]["n"]}
    return result


FLOOD_CHANNELS = (0, 2)     # channel 2 (index 1) is the AI's
RECOVERY_CHANNEL = 3


def flood_messages(seconds: float = 10.0, per_s: int = 2000) -> tuple[list[tuple[float, tuple]], float]:
    """`per_s` note-ons a second (each with its note-off half a step later) for `seconds`, every
    message unique; then, after 1.5 s, an 8-note phrase the box should answer again. Returns the
    timed messages and when the phrase ends."""
    step, timed = 1.0 / per_s, []
    for i in range(int(seconds * per_s)):
        channel, k = FLOOD_CHANNELS[i // 16256], i % 16256
        pitch, velocity = k % 128, 1 + k // 128
        t = 0.3 + i * step
        timed += [(t, (0x90 | channel, pitch, velocity)), (t + step / 2, (0x80 | channel, pitch, velocity))]
    start = 0.3 + seconds + 1.5
    for j in range(8):
        t = start + j * 0.15
        timed += [(t, (0x90 | RECOVERY_CHANNEL, 60 + j, 90)), (t + 0.1, (0x80 | RECOVERY_CHANNEL, 60 + j, 90))]
    return timed, start + 8 * 0.15


def _shed_count(box_said: str) -> int:
    """The late notes the box's voice shed, from what `sideman run` says when it stops."""
    found = re.search(r"the voice fell behind: (\d+) late notes shed", box_said or "")
    return int(found.group(1)) if found else 0


def run_flood_bench(voice: str = "transformer", seconds: float = 10.0, per_s: int = 2000, period: int = 64,
                    rate: int = 48000, thru: str = "auto") -> dict:
    """A flood into the box while its voice plays: does thru pass every message, in order, and
    no fewer than a direct JACK connection gets (the baseline, same messages, same instants)? And
    does the AI answer again once it is over?"""
    timed, phrase_end_s = flood_messages(seconds, per_s)
    sent, listening = _play_into_box(voice, timed, period, rate, settle_s=8.0, thru=thru)  # room to answer
    order = list(sent)  # dict order = sending order
    flood = order[:-16]  # the recovery phrase is the last 16 messages
    flood_s = (sent[flood[-1]] - sent[flood[0]]) / 1e9
    arrived = {path: listening.first_arrivals[path] for path in ("direct", "via")}
    lost = {path: sum(m not in got for m in order) for path, got in arrived.items()}
    via_order = [m for m in arrived["via"] if m in sent]
    phrase_end_ns = sent[order[-1]]
    return {
        "benchmark": "thru-flood", "thru": thru, "voice": voice, "jack_period_frames": period,
        "note_ons_per_s": per_s, "seconds": seconds, "messages_sent": len(order),
        "note_ons_per_s_as_sent": round(len(flood) / 2 / flood_s),
        "lost": {"direct": lost["direct"], "via_sideman": lost["via"]},
        "via_sideman_in_order": via_order == [m for m in order if m in arrived["via"]],
        "ai_note_ons": listening.ai_note_ons,
        "ai_shed_late_notes": _shed_count(listening.box_said),
        "ai_note_ons_after_the_flood_phrase": sum(t > phrase_end_ns for t in listening.ai_note_on_times),
        "phrase_end_s": round(phrase_end_s, 2),
    }
