"""`sideman-bench soak --minutes M`: the box duets over real JACK ports for M minutes, the way a
set goes: call and response first, then each other mode in turn (equal shares of the time).

A player written in code plays phrases of 2-4 bars at 120 BPM (a right-hand line, a left-hand
chord now and then, the sustain pedal), with rests of 1-4 bars in the answering modes and of a beat
or two in comping and duet. Each of their messages goes at the same instant straight to a listener
("direct", the baseline) and into the box, whose output goes to a second listener ("via sideman").

Every `report_minutes` (and at the end) one report: the player's messages lost on each path, and
those that reached the direct listener but not the box's ("via_sideman_beyond_direct": what
Sideman lost, as opposed to what the player's port or the server lost before the paths split), the
AI's notes and answers, the box's RSS (all of it, and its own: without the JACK server's shared
memory it maps) and their growth since the first 5 minutes, its CPU share of one
core, and the engine's shed events and the transformer's fall-backs. At the end: AI notes still
sounding once the box has stopped (stuck), as a synth would have them (a note-off or an All Notes
Off ends them)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import rtmidi

from sideman_bench.probe import SinkPoller
from sideman.ports.contract import PortError
from sideman.ports.jack_server import DummyJackServer
from sideman.processes import dies_with_parent

MODE_ORDER = ("call-response", "comp", "trade", "duet", "variation")
ANSWER_MODES = ("call-response", "trade", "variation")
PLAYER_CHANNEL = 0
AI_CHANNEL = 1          # the box's default (channel 2)
BEAT_S = 0.5            # 120 BPM
ANSWER_GAP_S = 1.0      # an AI note-on this long after the AI's previous one starts a new answer
KEEP_CC = 80            # "keep that phrase" (the variation mode's material)
# RSS growth is measured from here. Over the first minutes RSS climbs to a working size as
# onnxruntime's arena and the allocator see every shape the voice uses (seen: 286 MB at 1 minute,
# 335 MB at 5, 339 MB at 10); growth after that is what would end a long gig.
WARM_UP_S = 300.0


def _jack_connect(source: str, destination: str) -> None:
    subprocess.run(["jack_connect", source, destination], check=True, stdout=subprocess.DEVNULL)


class _Listeners(SinkPoller):
    """Counts of the player's messages per path, and the AI's notes (held, started, answers) from
    the box's output."""

    def __init__(self, sinks: dict):
        super().__init__(sinks, poll_s=0.0005)
        self.arrived = {path: collections.Counter() for path in sinks}
        self.ai_note_ons = 0
        self.answers = 0
        self.ai_held: collections.Counter = collections.Counter()
        self._last_ai_on_ns = 0
        self._lock = threading.Lock()

    def snapshot(self) -> tuple[dict, int, int, int]:
        with self._lock:
            return ({path: collections.Counter(c) for path, c in self.arrived.items()},
                    self.ai_note_ons, self.answers, sum(self.ai_held.values()))

    def take(self, path: str, message: tuple, t_ns: int) -> None:
        with self._lock:
            if path == "via" and message[:1] == (0xB0 | AI_CHANNEL,) and message[1] in (120, 123):
                self.ai_held.clear()   # All Sound / All Notes Off: a synth stops every AI note
                return
            if len(message) == 3 and message[0] & 0x0F == AI_CHANNEL and message[0] & 0xE0 == 0x80:
                if path != "via":
                    return
                if message[0] & 0xF0 == 0x90 and message[2] > 0:
                    self.ai_note_ons += 1
                    if t_ns - self._last_ai_on_ns > ANSWER_GAP_S * 1e9:
                        self.answers += 1
                    self._last_ai_on_ns = t_ns
                    self.ai_held[message[1]] += 1
                elif self.ai_held[message[1]] > 0:
                    self.ai_held[message[1]] -= 1
                return
            self.arrived[path][message] += 1


def player_phrase(rng: np.random.Generator, start_s: float, answering: bool) -> tuple[list, float]:
    """One phrase from start_s: (time, message) pairs, and when the next phrase may start."""
    scale = [p for p in range(55, 86) if p % 12 in (0, 2, 3, 5, 7, 9, 10)]   # a Dorian line
    timed, t, i = [], start_s, int(rng.integers(4, len(scale) - 4))
    end = start_s + BEAT_S * 4 * int(rng.integers(2, 5))
    if rng.random() < 0.5:   # a left-hand chord under the phrase, with the pedal
        root = int(rng.choice([38, 41, 43, 45, 48]))
        chord = [root, root + int(rng.choice([3, 4])), root + 10]
        timed.append((t, (0xB0 | PLAYER_CHANNEL, 64, 127)))
        for pitch in chord:
            velocity = int(rng.integers(45, 75))
            timed += [(t, (0x90 | PLAYER_CHANNEL, pitch, velocity)), (t + BEAT_S * 3, (0x80 | PLAYER_CHANNEL, pitch, 0))]
        timed.append((t + BEAT_S * 3.5, (0xB0 | PLAYER_CHANNEL, 64, 0)))
    while t < end:
        i = int(min(len(scale) - 1, max(0, i + rng.choice([-3, -2, -1, 1, 1, 2]))))
        step = BEAT_S * float(rng.choice([0.5, 0.5, 0.5, 1.0, 1.5]))
        velocity = int(rng.integers(50, 100))
        timed += [(t, (0x90 | PLAYER_CHANNEL, scale[i], velocity)), (t + step * 0.8, (0x80 | PLAYER_CHANNEL, scale[i], 0))]
        t += step
    rest_beats = int(rng.integers(4, 17)) if answering else int(rng.integers(1, 3))
    return sorted(timed, key=lambda item: item[0]), end + rest_beats * BEAT_S


class _SoakBox:
    """The box process (sideman_bench.soak_box) and its command line."""

    def __init__(self, env: dict, voice: str, log_path: str | None = None):
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL   # what the box says
        self.process = subprocess.Popen(
            dies_with_parent([sys.executable, "-m", "sideman_bench.soak_box", voice], signal="KILL"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        ready = self._reply()
        if "ready" not in ready:
            raise PortError(f"the soak box did not start: {ready}")
        self.ready = ready["ready"]

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise PortError("the soak box exited")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply()

    def stop(self) -> dict:
        try:
            return self.ask("stop")["stopped"]
        finally:
            self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


def _growth(stats: dict, warm: dict | None, key: str) -> float | None:
    """Percent growth of a memory figure since the warm-up ended."""
    return round(100 * (stats[key] - warm[key]) / warm[key], 2) if warm else None


def _half_way(reports: list[dict]) -> dict | None:
    """The report at half the set (None for a set of one report)."""
    return reports[len(reports) // 2 - 1] if len(reports) >= 2 else None


def _lost(sent: collections.Counter, arrived: collections.Counter) -> int:
    return sum(max(0, n - arrived.get(m, 0)) for m, n in sent.items())


def _lost_by_paths(sent: collections.Counter, arrived: dict) -> dict[str, int]:
    """Messages lost on each path, and those the direct listener got but the box's did not."""
    return {"direct": _lost(sent, arrived["direct"]), "via": _lost(sent, arrived["via"]),
            "beyond": _lost(arrived["direct"], arrived["via"])}


def run_soak_bench(minutes: float = 60.0, report_minutes: float = 5.0, period: int = 64, rate: int = 48000,
                   seed: int = 1, voice: str = "transformer", box_log: str | None = None, on_report=None) -> dict:
    rng = np.random.default_rng(seed)
    total_s, report_s = minutes * 60.0, report_minutes * 60.0
    segment_s = total_s / len(MODE_ORDER)
    reports: list[dict] = []
    sent: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="sideman-soak-") as data_dir, \
            DummyJackServer(name=f"sideman-soak-{os.getpid()}", rate=rate, period=period) as server:
        env = dict(os.environ, JACK_DEFAULT_SERVER=server.name, SIDEMAN_DATA_DIR=data_dir)
        box = _SoakBox(env, voice, box_log)
        source = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "soak-player")
        sinks = {path: rtmidi.MidiIn(rtmidi.API_UNIX_JACK, f"soak-{path}") for path in ("direct", "via")}
        listeners = _Listeners(sinks)
        try:
            source.open_virtual_port("out")
            for sink in sinks.values():
                sink.open_virtual_port("in")
                sink.ignore_types(sysex=True, timing=True, active_sense=True)
            listeners.start()
            _jack_connect("soak-player:out", "soak-direct:in")
            _jack_connect("soak-player:out", "sideman:in")
            _jack_connect("sideman-out:out", "soak-via:in")
            time.sleep(0.5)
            start = time.monotonic()
            mode, phrase_at, warm, phrases, modes_played = None, 0.5, None, 0, []
            last_stats = box.ready
            previous = {"t_s": 0.0, "cpu_s": box.ready["cpu_s"], "lost": {"direct": 0, "via": 0, "beyond": 0},
                        "ai_note_ons": 0, "answers": 0, "phrases": 0}
            next_report = min(report_s, total_s)
            while True:
                elapsed = time.monotonic() - start
                if elapsed >= next_report or elapsed >= total_s:
                    time.sleep(0.05)   # what was just sent has arrived
                    stats = last_stats = box.ask("stats")
                    arrived, ai_ons, answers, ai_held = listeners.snapshot()
                    lost = _lost_by_paths(sent, arrived)
                    t_s = time.monotonic() - start
                    report = {
                        "minute": round(t_s / 60, 1), "mode": mode,
                        "player_messages_sent": sum(sent.values()),
                        "lost_thru": {"direct": lost["direct"] - previous["lost"]["direct"],
                                      "via_sideman": lost["via"] - previous["lost"]["via"],
                                      "via_sideman_beyond_direct": lost["beyond"] - previous["lost"]["beyond"]},
                        "phrases": phrases - previous["phrases"],
                        "ai_note_ons": ai_ons - previous["ai_note_ons"], "answers": answers - previous["answers"],
                        "ai_notes_sounding_now": ai_held,
                        "rss_mb": stats["rss_mb"], "rss_private_mb": stats["rss_private_mb"],
                        "rss_growth_since_warm_pct": _growth(stats, warm, "rss_mb"),
                        "rss_private_growth_since_warm_pct": _growth(stats, warm, "rss_private_mb"),
                        "cpu_share_of_one_core": round((stats["cpu_s"] - previous["cpu_s"]) / (t_s - previous["t_s"]), 3),
                        "engine_shed": stats["engine_shed"], "engine_dropped": stats["engine_dropped"],
                        "voice_errors": stats["voice_errors"], "fallbacks": stats["fallbacks"],
                        "voice": stats["voice"], "jack_xruns": server.xruns,
                    }
                    reports.append(report)
                    if on_report is not None:
                        on_report(report)
                    previous = {"t_s": t_s, "cpu_s": stats["cpu_s"], "lost": lost, "ai_note_ons": ai_ons,
                                "answers": answers, "phrases": phrases}
                    next_report += report_s
                    if elapsed >= total_s:
                        break
                if warm is None and elapsed >= min(WARM_UP_S, total_s / 2):
                    warm = box.ask("stats")
                # The next mode once its share of the time has come, one mode per phrase at most:
                # every mode gets played even when its share is shorter than a phrase.
                due = min(len(MODE_ORDER) - 1, int(elapsed // segment_s))
                if mode is None or (MODE_ORDER.index(mode) < due):
                    mode = MODE_ORDER[0 if mode is None else MODE_ORDER.index(mode) + 1]
                    if box.ask(f"mode {mode}").get("mode") != mode:
                        raise PortError(f"the soak box did not switch to {mode}")
                    modes_played.append(mode)
                    phrases_in_mode = 0
                timed, next_phrase = player_phrase(rng, phrase_at, answering=mode in ANSWER_MODES)
                if mode == "variation" and phrases_in_mode % 4 == 0:   # keep this phrase, now and then
                    last = timed[-1][0]
                    timed += [(last + 0.01, (0xB0 | PLAYER_CHANNEL, KEEP_CC, 127)),
                              (last + 0.02, (0xB0 | PLAYER_CHANNEL, KEEP_CC, 0))]
                for at, message in timed:
                    delay = start + at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    sent[message] += 1
                    source.send_message(message)
                phrases += 1
                phrases_in_mode += 1
                phrase_at = max(next_phrase, time.monotonic() - start)
                # Rest until the next phrase, but never sleep through a report.
                while time.monotonic() - start < min(phrase_at, next_report, total_s):
                    time.sleep(0.01)
            final = box.stop()
            time.sleep(0.5)   # the box's last note-offs arrive
            arrived, ai_ons, answers, ai_held = listeners.snapshot()
        finally:
            box.kill()
            listeners.stop()
            for client in (*sinks.values(), source):
                client.delete()
    # Counted at the last report, while the box still played: on stop it lets go of the player's
    # held notes, and those note-offs would stand in for one the box never heard, hiding its loss.
    lost_total = previous["lost"]
    rss = [r["rss_mb"] for r in reports]
    playing = last_stats   # memory is read while the box plays: once stopped, its JACK clients are gone
    return {
        "benchmark": "soak", "minutes": minutes, "voice": voice, "modes_played": modes_played,
        "jack_period_frames": period,
        "player_messages_sent": sum(sent.values()),
        "player_note_ons_sent": sum(n for m, n in sent.items() if m[0] & 0xF0 == 0x90),
        "lost_thru": {"direct": lost_total["direct"], "via_sideman": lost_total["via"],
                      "via_sideman_beyond_direct": lost_total["beyond"]},
        "ai_note_ons": ai_ons, "answers": answers,
        "ai_notes_stuck_after_stop": ai_held,
        "rss_mb": {"ready": box.ready["rss_mb"], "warm": warm and warm["rss_mb"], "end": playing["rss_mb"],
                   "max": max(rss) if rss else None},
        "rss_private_mb": {"ready": box.ready["rss_private_mb"], "warm": warm and warm["rss_private_mb"],
                           "end": playing["rss_private_mb"], "shared_end": playing["rss_shared_mb"]},
        "rss_growth_since_warm_pct": _growth(playing, warm, "rss_mb"),
        "rss_private_growth_since_warm_pct": _growth(playing, warm, "rss_private_mb"),
        # Memory that fills to a bound (the Markov voice's memory of the player) grows early and
        # stays; a leak keeps growing in the last half too.
        "rss_private_growth_in_last_half_pct": _growth(playing, _half_way(reports), "rss_private_mb"),
        "engine_shed": final["engine_shed"], "engine_dropped": final["engine_dropped"],
        "voice_errors": final["voice_errors"], "fallbacks": final["fallbacks"],
        "jack_xruns": server.xruns,
        "reports": reports,
        # The bar: nothing lost through Sideman, nothing stuck, RSS (VmRSS) growth under 5 %
        # since the warm-up. The box's own memory is reported beside it, with its last half.
        "meets_goal": bool(lost_total["via"] == 0 and ai_held == 0 and warm
                           and _growth(playing, warm, "rss_mb") < 5),
    }
