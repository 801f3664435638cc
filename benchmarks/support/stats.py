"""Percentiles and latency summaries."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.support.run_results import Latency

__all__ = ["latency_summary", "percentile"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` (0..100) percentile of sorted values, nearest rank; 0 if empty."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def latency_summary(
    step: str, kind: str, offered: float, achieved: float, seconds: Sequence[float]
) -> Latency:
    """Percentiles in milliseconds of latencies given in seconds."""
    ms = sorted(s * 1000 for s in seconds)
    return Latency(
        step=step,
        kind=kind,
        offered=offered,
        achieved=achieved,
        count=len(ms),
        p50=percentile(ms, 50),
        p95=percentile(ms, 95),
        p99=percentile(ms, 99),
        max=ms[-1] if ms else 0.0,
    )
