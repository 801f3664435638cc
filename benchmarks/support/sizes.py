"""How big each benchmark size is."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SIZES", "Size"]


@dataclass(frozen=True)
class Size:
    """Parameters of one benchmark size (see ``docs/benchmarks.md``)."""

    name: str
    messages: int
    """Backlog relayed by the throughput and scaling scenarios."""
    aggregates: int
    payload_bytes: int
    write_seconds: float
    """Duration of each alternating round of the write-path scenario."""
    write_rounds: int
    writers: int
    loads: tuple[int, ...]
    """Offered loads (messages/s) of the latency scenario."""
    load_seconds: float
    """Measured seconds of each latency run, after ``warmup_seconds`` at the same load."""
    warmup_seconds: float
    backlogs: tuple[int, ...]
    """Pending rows of the backlog-scaling scenario."""
    claims: int
    """Timed claims per backlog."""
    relay_counts: tuple[int, ...]
    mongo_messages: int
    """Backlog of mongodb -> kafka, over a tenth as many aggregate documents (``full``: the
    issue's 100,000 over 10,000; smaller sizes keep FerretDB's share of the run short)."""
    shard_count: int = 64
    throughput_rounds: int = 1
    """Alternating raw / relay rounds of the pg pipelines of scenario 1 (rates over all)."""
    latency_rounds: int = 1
    """Rounds of outboxkit and of the floor, alternating, at the latency bar's load."""
    observability_rounds: int = 2
    """Rounds of the observability scenario, each relaying the backlog in every mode."""
    batch_size: int = 500


SIZES: dict[str, Size] = {
    "smoke": Size(
        name="smoke",
        messages=500,
        aggregates=50,
        payload_bytes=1024,
        write_seconds=1.0,
        write_rounds=1,
        writers=8,
        loads=(100,),
        load_seconds=2.0,
        warmup_seconds=0.5,
        backlogs=(1_000, 5_000),
        claims=10,
        relay_counts=(1, 2),
        mongo_messages=200,
        observability_rounds=1,
    ),
    "small": Size(
        name="small",
        messages=10_000,
        aggregates=1_000,
        payload_bytes=1024,
        write_seconds=3.0,
        write_rounds=2,
        writers=8,
        loads=(100, 1_000),
        load_seconds=5.0,
        warmup_seconds=2.0,
        backlogs=(1_000, 100_000),
        claims=20,
        relay_counts=(1, 2),
        mongo_messages=2_000,
    ),
    "full": Size(
        name="full",
        messages=100_000,
        aggregates=10_000,
        payload_bytes=1024,
        write_seconds=10.0,
        write_rounds=3,
        throughput_rounds=2,
        latency_rounds=3,
        writers=8,
        loads=(100, 1_000, 5_000),
        load_seconds=20.0,
        warmup_seconds=2.0,
        backlogs=(1_000, 100_000, 1_000_000),
        claims=50,
        relay_counts=(1, 2, 4),
        mongo_messages=100_000,
        observability_rounds=3,
    ),
}
