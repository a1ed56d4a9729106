"""`sideman-bench memory`: does the voice's memory stay flat over a set? In minutes, not an hour.

The soak's player (`bench/soak.py`) plays into the voice on a simulated clock, with no ports: every
mode in turn, twice, `--minutes-per-mode` simulated minutes each. The voice thinks as fast as the
CPU lets it, so an hour's set takes a few minutes. Each voice runs in a fresh process of its own
(what one voice allocated must not count as another's), and reports its private memory (RssAnon)
every simulated minute. The Markov voice is the baseline beside the transformer.

Reported per voice: RssAnon at minute 5 and at the end, growth since minute 5, and growth over the
last half of the set: a memory that fills to its bound grows early and then stays, a leak keeps
growing in the last half too."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from sideman.processes import dies_with_parent

WARM_MINUTE = 5      # growth is measured from here, as the soak does
TICK_S = 0.005       # the engine's tick


def simulate_set(voice, minutes_per_mode: float, seed: int = 1) -> list[float]:
    """The soak's player into a voice (a Session) on a simulated clock; RssAnon once a simulated
    minute."""
    from sideman_bench.soak import ANSWER_MODES, MODE_ORDER, player_phrase
    from sideman_bench.soak_box import memory_mb   # the soak's own reading: RssAnon is rss_private_mb

    rng = np.random.default_rng(seed)
    t, phrase_at, next_minute, rss = 1.0, 1.0, 60.0, []
    for k, mode in enumerate(MODE_ORDER * 2):
        voice.set_mode(mode, t)
        mode_ends = (k + 1) * minutes_per_mode * 60
        while t < mode_ends:
            timed, next_phrase = player_phrase(rng, phrase_at, answering=mode in ANSWER_MODES)
            i = 0
            while t < next_phrase or i < len(timed):
                while i < len(timed) and timed[i][0] <= t:
                    voice.hear(timed[i][1], int(timed[i][0] * 1e9))
                    i += 1
                voice.tick(int(t * 1e9))
                t += TICK_S
                if t >= next_minute:
                    rss.append(memory_mb()["rss_private_mb"])
                    next_minute += 60.0
            phrase_at = max(next_phrase, t)
    return rss


def _growth(before: float, after: float) -> float:
    return round(100 * (after - before) / before, 2)


def summarize(rss: list[float]) -> dict:
    """Growth since minute 5 and over the last half of the set (a leak grows there too)."""
    warm = rss[min(WARM_MINUTE, len(rss)) - 1]
    half = rss[max(1, len(rss) // 2) - 1]
    return {"simulated_minutes": len(rss),
            "rss_anon_mb": {"minute_5": warm, "half": half, "end": rss[-1], "max": max(rss)},
            "growth_since_minute_5_pct": _growth(warm, rss[-1]),
            "growth_in_last_half_pct": _growth(half, rss[-1]),
            "rss_anon_mb_per_minute": rss}


def run_memory_bench(minutes_per_mode: float = 6.0, voices: tuple[str, ...] = ("transformer", "markov"),
                     seed: int = 1) -> dict:
    results = {}
    for name in voices:
        child = subprocess.run(
            dies_with_parent([sys.executable, "-m", "sideman_bench.memory", name, str(minutes_per_mode), str(seed)]),
            capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"the {name} voice's set failed: {child.stderr.strip()[-2000:]}")
        run = json.loads(child.stdout.strip().splitlines()[-1])
        results[name] = {"voice": run["voice"], "wall_s": run["wall_s"], **summarize(run["rss_anon_mb_per_minute"])}
    return {"benchmark": "memory", "minutes_per_mode": minutes_per_mode, "player": "the soak's (bench/soak.py)",
            "voices": results}


def main() -> int:
    """One voice's set, in this (fresh) process: JSON on stdout."""
    from sideman_bench.soak import MODE_ORDER
    from sideman.play.voices import make_voice

    name, minutes_per_mode, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    voice = make_voice(name, MODE_ORDER[0], seed=seed)
    started = time.perf_counter()
    rss = simulate_set(voice, minutes_per_mode, seed)
    print(json.dumps({"voice": voice.improviser.name, "rss_anon_mb_per_minute": rss,
                      "wall_s": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
