"""Percentiles for benchmark reports (milliseconds, rounded for reading)."""

from __future__ import annotations

import statistics


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
