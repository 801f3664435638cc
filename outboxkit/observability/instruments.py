"""Histograms and counters the relay fills on its hot path, in plain Python.

They cost a bisect and two additions per observation (no lock: the relay runs on one event
loop); the Prometheus collector reads them only when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["DURATION_BUCKETS", "LAG_BUCKETS", "SIZE_BUCKETS", "Histogram", "RelayInstruments"]

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class Histogram:
    """Cumulative-at-read histogram: ``counts[i]`` counts values in ``(bounds[i-1], bounds[i]]``
    and the last slot those above every bound (Prometheus' ``le`` buckets)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``."""
        result: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            result.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return result

    def quantile(self, q: float) -> float | None:
        """An upper bound of the ``q`` quantile (the bucket bound it falls in), None if empty."""
        if not self.count:
            return None
        rank = q * self.count
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            if running >= rank:
                return bound
        return float("inf")  # pragma: no cover - the loop always reaches the total


@dataclass
class RelayInstruments:
    """What :class:`~outboxkit.observability.ObservedStore` and
    :class:`~outboxkit.observability.ObservedPublisher` measure (per batch and per message)."""

    claims: int = 0
    claim_seconds: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    publish_seconds: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    ack_seconds: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(SIZE_BUCKETS))
    lag_seconds: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))
    """Commit (``created_at``) to broker acknowledgement, one observation per delivery."""
