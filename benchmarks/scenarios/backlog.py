"""Scenario 4: claim cost against backlog size.

One shard holds the whole backlog (``shard_count=1``), so every claim of ``batch_size`` rows is
full and the claimed shard's index range holds every pending row: the hard case. The table
grows in place (1k, then 100k, then 1M rows); at each size the same lease claims the first
batch ``claims`` times without acking (after warm-up claims) and the median is reported.
Bar: median claim time at the largest backlog <= 1.5 x at the smallest.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.support.bulk_rows import add_rows, write_template
from benchmarks.support.context import Context
from benchmarks.support.pg_backlog import PgBacklog
from benchmarks.support.progress import progress, say
from benchmarks.support.run_results import Bar, Measure
from benchmarks.support.stats import percentile

__all__ = ["run"]

SCENARIO = "4 backlog"
WARMUP = 3
AGGREGATES = 10_000


async def claim_times(ctx: Context, backlog: PgBacklog, pending: int) -> tuple[list[float], int]:
    """Seconds of each timed claim and the rows a claim returned."""
    store = backlog.store()
    await store.open()
    try:
        lease = await store.acquire("bench-backlog", 0, 600.0)
        assert lease is not None, "shard 0 is leased by someone else"
        times: list[float] = []
        rows = 0
        async with progress(f"{SCENARIO} {pending:,} pending: claims", ctx.size.claims) as t:
            for i in range(WARMUP + ctx.size.claims):
                started = time.perf_counter()
                rows = len(await store.claim(lease, ctx.size.batch_size))
                if i >= WARMUP:
                    times.append(time.perf_counter() - started)
                    t.add()
        await store.release([lease])
        return times, rows
    finally:
        await store.close()


async def run(ctx: Context) -> None:
    medians: dict[int, float] = {}
    async with ctx.backlog("pg", "backlog", shard_count=1) as backlog:
        assert isinstance(backlog, PgBacklog)
        await write_template(backlog)
        loaded = 1
        for pending in ctx.size.backlogs:
            started = time.perf_counter()
            await add_rows(backlog, pending - loaded, AGGREGATES)
            loaded = pending
            say(f"{SCENARIO}: {pending:,} rows pending (+{time.perf_counter() - started:.1f}s)")
            times, rows = await claim_times(ctx, backlog, pending)
            ms = sorted(t * 1000 for t in times)
            medians[pending] = statistics.median(ms)
            ctx.results.measures.append(
                Measure(
                    scenario=SCENARIO,
                    step=f"claim {rows} of {pending:,} pending",
                    value=medians[pending],
                    unit="ms",
                    details={"p95_ms": percentile(ms, 95), "max_ms": ms[-1], "claims": len(ms)},
                )
            )
    smallest, largest = min(medians), max(medians)
    ratio = medians[largest] / medians[smallest]
    say(f"{SCENARIO}: claim at {largest:,} = {ratio:.2f} x claim at {smallest:,}")
    ctx.results.measures.append(
        Measure(
            scenario=SCENARIO,
            step=f"claim cost {largest:,} vs {smallest:,} pending",
            value=medians[largest],
            unit="ms",
            baseline=medians[smallest],
            baseline_label=f"{smallest:,} pending",
            ratio=ratio,
            ratio_label=f"x {smallest:,}",
            bar=Bar(op="<=", limit=1.5, text="largest <= 1.5 x smallest"),
        )
    )
