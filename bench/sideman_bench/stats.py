"""Figures for benchmark reports: percentiles (milliseconds, rounded for reading), and the CPU and
peak memory of this process."""

from __future__ import annotations

import os
import resource
import statistics
import threading


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values_ns) -> dict:
    values = [v / 1e6 for v in values_ns]
    return {"n": len(values), "p50_ms": round(statistics.median(values), 4) if values else None,
            "p99_ms": round(percentile(values, 99), 4) if values else None,
            "max_ms": round(max(values), 4) if values else None}


def box_cpu_seconds() -> float:
    """CPU seconds of this process's `sideman*` threads (the box: engine with the voice, sender,
    MIDI input, hot-plug), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        if not thread.name.startswith("sideman"):
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; getrusage where /proc has none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
