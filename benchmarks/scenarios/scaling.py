"""Scenario 5: 1, 2 and 4 relay processes (pg -> kafka) draining the same backlog.

Every process is started and set up first; the clock runs from the "go" line sent to all of
them until the store reports nothing pending. Leases are sampled meanwhile; the shard
distribution reported is the sample with the most owners, and each process's published count
comes from its own metrics. Baseline: one process (ratio = speed-up).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import anyio
import msgspec
from anyio.abc import Process

from benchmarks.support.consumers import Consume
from benchmarks.support.context import Context
from benchmarks.support.correctness import Tally
from benchmarks.support.pg_backlog import PgBacklog
from benchmarks.support.progress import progress, say
from benchmarks.support.run_results import Measure
from benchmarks.support.server_urls import REPO
from benchmarks.support.targets import BrokerTarget
from benchmarks.support.workload import make_messages
from outboxkit.protocols import Store

__all__ = ["run"]

SCENARIO = "5 relay scaling"


async def start_relays(ctx: Context, backlog: PgBacklog, count: int) -> list[Process]:
    processes = []
    for i in range(count):
        command = [
            sys.executable,
            "-m",
            "benchmarks.support.relay_subprocess",
            "--dsn",
            ctx.servers.postgres,
            "--schema",
            backlog.settings.schema,
            "--bootstrap",
            ctx.servers.kafka,
            "--name",
            f"bench-relay-{i}",
            "--batch-size",
            str(ctx.size.batch_size),
        ]
        processes.append(await anyio.open_process(command, cwd=REPO, stderr=None))
    for process in processes:
        assert process.stdout is not None
        line = await process.stdout.receive()
        if not line.startswith(b"ready"):
            raise RuntimeError(f"relay process did not start: {line!r}")
    return processes


async def stop_relays(processes: list[Process]) -> list[dict[str, Any]]:
    """SIGTERM every process; their metrics."""
    metrics = []
    for process in processes:
        process.terminate()
    for process in processes:
        assert process.stdout is not None
        out = b""
        with anyio.move_on_after(30):
            async for chunk in process.stdout:
                out += chunk
        await process.wait()
        last = out.strip().splitlines()[-1] if out.strip() else b"{}"
        metrics.append(msgspec.json.decode(last))
    return metrics


async def drain(ctx: Context, store: Store, total: int, count: int) -> tuple[float, Counter[str]]:
    """Wait until nothing is pending; (seconds, shards per owner at the busiest sample)."""
    best: Counter[str] = Counter()
    async with progress(f"{SCENARIO} {count} relays", total) as tracker:
        started = time.perf_counter()
        while True:
            status = await store.status()
            tracker.done = total - status.pending
            owners = Counter(lease.owner for lease in status.leases if lease.owner)
            if len(owners) >= len(best):
                best = owners
            if status.pending == 0:
                return time.perf_counter() - started, best
            await anyio.sleep(0.1)


async def one_count(ctx: Context, broker: BrokerTarget, count: int) -> float:
    size = ctx.size
    async with (
        broker.destination(f"scale_{count}") as topic,
        ctx.backlog("pg", f"scale_{count}") as backlog,
    ):
        assert isinstance(backlog, PgBacklog)
        messages = make_messages(topic, size.messages, size.aggregates, size.payload_bytes)
        async with progress(f"{SCENARIO} {count} relays: filling pg", len(messages)) as t:
            await backlog.fill(messages, t)
        observer = backlog.store()
        await observer.open()
        processes = await start_relays(ctx, backlog, count)
        try:
            for process in processes:
                assert process.stdin is not None
                await process.stdin.send(b"go\n")
            seconds, owners = await drain(ctx, observer, len(messages), count)
        finally:
            metrics = await stop_relays(processes)
            await observer.close()
        tally = Tally(messages)
        await broker.consume(topic, Consume(tally, idle=15.0))
    ctx.results.correctness.append(tally.result(SCENARIO, f"{count} relays"))
    rate = len(messages) / seconds
    published = [int(m.get("published", 0)) for m in metrics]
    say(
        f"{SCENARIO} {count} relays: {rate:,.0f} msg/s, shards {dict(owners)}, "
        f"published {published}"
    )
    ctx.results.measures.append(
        Measure(
            scenario=SCENARIO,
            step=f"{count} relay processes",
            value=rate,
            unit="msg/s",
            details={
                "shards_per_owner": sorted(owners.values(), reverse=True),
                "published_per_process": published,
            },
        )
    )
    return rate


async def run(ctx: Context) -> None:
    broker = ctx.broker("kafka")
    rates = {count: await one_count(ctx, broker, count) for count in ctx.size.relay_counts}
    single = rates[min(rates)]
    for measure in ctx.results.measures:
        if measure.scenario == SCENARIO:
            measure.baseline, measure.baseline_label = single, "1 process"
            measure.ratio, measure.ratio_label = measure.value / single, "x 1 process"
