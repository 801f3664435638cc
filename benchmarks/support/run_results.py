"""What a benchmark run produces: measures against bars, latencies and correctness."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from benchmarks.support.correctness import Correctness

__all__ = ["Bar", "Latency", "Measure", "RunResults"]


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    """A target from DESIGN.md section 7: ``ratio <op> limit``."""

    op: Literal[">=", "<="]
    limit: float
    text: str

    def passes(self, ratio: float) -> bool:
        return ratio >= self.limit if self.op == ">=" else ratio <= self.limit

    def headroom(self, ratio: float) -> float:
        """1.0 at the bar, above 1 when it passes (for the plot)."""
        if ratio <= 0:
            return 0.0
        return ratio / self.limit if self.op == ">=" else self.limit / ratio


class Measure(msgspec.Struct, kw_only=True):
    """One number of a scenario, its same-run baseline and their ratio."""

    scenario: str
    step: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    ratio_label: str = ""
    bar: Bar | None = None
    passed: bool | None = None
    floor: float | None = None
    """The same figure of a hand-written minimal outbox (throughput: at-most-once relay)."""
    floor_label: str = ""
    floor_ratio: float | None = None
    floor_bar: Bar | None = None
    floor_passed: bool | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.bar is not None and self.ratio is not None:
            self.passed = self.bar.passes(self.ratio)
        if self.floor_bar is not None and self.floor_ratio is not None:
            self.floor_passed = self.floor_bar.passes(self.floor_ratio)


class Latency(msgspec.Struct, kw_only=True):
    """Latency percentiles (milliseconds) of one offered load."""

    step: str
    kind: str
    offered: float
    achieved: float
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    cpu_us: dict[str, float] = msgspec.field(default_factory=dict)
    """CPU time per message of each process (``relay``, ``writer``) and server, microseconds."""
    machine_busy: float | None = None
    """Share (0..1) of the machine's CPU time that was busy while the writer ran."""
    per_second: list[list[float]] = msgspec.field(default_factory=list)
    """[p50, p99, max] of the messages committed in each second of the measured part."""


class RunResults(msgspec.Struct, kw_only=True):
    """Everything a run writes to ``results.json``."""

    started: str
    size: str
    seconds: float = 0.0
    host: dict[str, str] = msgspec.field(default_factory=dict)
    versions: dict[str, str] = msgspec.field(default_factory=dict)
    measures: list[Measure] = msgspec.field(default_factory=list)
    latencies: list[Latency] = msgspec.field(default_factory=list)
    correctness: list[Correctness] = msgspec.field(default_factory=list)
    profile: dict[str, float] = msgspec.field(default_factory=dict)
    """Percent of the profiled pg -> kafka relay time per layer (``--profile``)."""
    profile_latency: dict[str, float] = msgspec.field(default_factory=dict)
    """The same for the relay process at the latency bar's load (``--profile``)."""
    errors: list[str] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No correctness failure and no scenario error (missed bars do not fail a run)."""
        return not self.errors and not any(c.failed for c in self.correctness)
