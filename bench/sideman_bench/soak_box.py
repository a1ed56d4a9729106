"""The box under `sideman-bench soak`, in a process of its own: `sideman run`'s box (the default
voice, or the one named as its argument; capture on, no built-in piano) on the JACK server named by
JACK_DEFAULT_SERVER. It prints one
JSON line when it plays, then answers each command on stdin with one JSON line:

    mode NAME   switch the play mode as the panel does (on the engine thread; what the old mode
                left sounding ends)
    stats       memory, CPU time, and the engine's and the voice's counters
    stop        stop the box (every note it sent ends), then exit

Run with `python -m sideman_bench.soak_box`; the benchmark starts it."""

from __future__ import annotations

import json
import resource
import sys

from sideman.box import Box, BoxConfig
from sideman.clock import NS_PER_S, now_ns
from sideman.model.voice import HUSH
from sideman.play.contracts import as_partner


def memory_mb() -> dict[str, float]:
    """Resident memory: all of it (VmRSS), the box's own (RssAnon), and the shared memory it has
    touched (RssShmem: on JACK mostly the server's segment, ~100 MB, mapped by every client)."""
    wanted = {"VmRSS:": "rss_mb", "RssAnon:": "rss_private_mb", "RssShmem:": "rss_shared_mb"}
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(None, 1)[0]
            if key in wanted:
                found[wanted[key]] = round(int(line.split()[1]) / 1024, 1)
    return found


def box_stats(box: Box) -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    partner = as_partner(box.voice)
    status = partner.improviser_status if partner is not None else {}
    return {**memory_mb(), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "voice": box.voice.name, "engine_dropped": box.engine.dropped, "engine_shed": box.engine.shed,
            "voice_errors": box.engine.voice_errors, "fallbacks": status.get("fallbacks", 0),
            "transformer_healthy": status.get("healthy")}


def switch_mode(box: Box, mode: str) -> None:
    def change():
        box.voice.set_mode(mode, now_ns() / NS_PER_S)
        return [HUSH]
    box.engine.call_soon(change)


def main() -> int:
    import faulthandler

    from sideman.service.journal import setup_logging

    faulthandler.enable()   # a native crash names its Python stack in the box log

    setup_logging(service=False, verbose=False)   # warnings (fall-backs, shedding) go to stderr
    voice = sys.argv[1] if len(sys.argv) > 1 else BoxConfig.voice
    box = Box(BoxConfig(backend="jack", autoconnect="", synth="none", capture=True, voice=voice),
              announce=lambda text: print(text, file=sys.stderr, flush=True))
    box.start()
    try:
        print(json.dumps({"ready": box_stats(box)}), flush=True)
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "mode":
                switch_mode(box, argument)
                print(json.dumps({"mode": argument}), flush=True)
            elif command == "stats":
                print(json.dumps(box_stats(box)), flush=True)
            elif command == "stop":
                break
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    finally:
        box.stop()
    print(json.dumps({"stopped": box_stats(box)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
