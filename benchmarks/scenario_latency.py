"""Scenario 3: end-to-end latency under an open-loop offered load (pg -> kafka).

A scheduler starts one single-message transaction every ``1/rate`` seconds whatever the
previous ones are doing (open loop); each message's commit time is taken when its commit
returns. The in-process relay's publisher is wrapped to note when each message's publish call
was acknowledged (commit -> ack), and a consumer reading the topic matches deliveries by the
``outboxkit-id`` header (commit -> receive). Run once with LISTEN/NOTIFY wake-ups and once with
``notify=False`` (pure polling at the relay's default ``poll_interval``).
"""

from __future__ import annotations

import time
from collections import defaultdict

import anyio

from benchmarks.consumers import Consume
from benchmarks.context import Context
from benchmarks.pg_backlog import PgBacklog, pg_backlog
from benchmarks.progress import Progress, progress, say, wait_until
from benchmarks.results import Bar, Latency, Measure
from benchmarks.stats import latency_summary
from benchmarks.targets import BrokerTarget, unique
from benchmarks.timing import AckClock
from benchmarks.verify import Tally
from benchmarks.workload import make_message
from outboxkit.relay import ShardedRelay
from outboxkit.relay_settings import RelaySettings

__all__ = ["run"]

SCENARIO = "3 latency"
BAR_LOAD = 1_000
BARS = {
    "p50": Bar(op="<=", limit=3.0, text="p50 <= 3 ms"),
    "p99": Bar(op="<=", limit=15.0, text="p99 <= 15 ms"),
}
AGGREGATES = 1_000
WRITE_CONNECTIONS = 16


class Probe:
    """Commit and receive times of one run, by message id."""

    def __init__(self) -> None:
        self.committed: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.tally = Tally()
        self.writing = True
        self.tracker: Progress | None = None

    def on_first(self, message_id: str, when: float) -> None:
        self.received[message_id] = when
        if self.tracker is not None:
            self.tracker.add()


async def offer_load(
    backlog: PgBacklog, topic: str, rate: int, seconds: float, probe: Probe
) -> float:
    """Write ``rate * seconds`` messages open-loop; return the achieved commit rate."""
    payload = b"x" * 1024
    locks: defaultdict[int, anyio.Lock] = defaultdict(anyio.Lock)
    seqs: defaultdict[int, int] = defaultdict(int)
    total = int(rate * seconds)

    async def write(index: int) -> None:
        aggregate = index % AGGREGATES
        async with locks[aggregate]:  # one writer per aggregate: seq order = commit order
            message = make_message(topic, aggregate, seqs[aggregate], payload)
            seqs[aggregate] += 1
            async with backlog.pool.acquire() as conn, conn.transaction():
                await backlog.outbox.add(conn, message)
            probe.committed[str(message.id)] = time.perf_counter()
            probe.tally.expect(message)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(total):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            tg.start_soon(write, index)
    return total / (time.perf_counter() - started)


async def measure(ctx: Context, broker: BrokerTarget, rate: int, notify: bool) -> None:
    """One offered load, one wake-up mode."""
    mode = "notify" if notify else "polling"
    step = f"{rate:,} msg/s, {mode}"
    probe = Probe()
    async with (
        broker.destination(f"lat_{rate}_{mode}") as topic,
        pg_backlog(
            ctx.servers.postgres,
            unique("lat"),
            ctx.size.shard_count,
            notify=notify,
            pool_size=WRITE_CONNECTIONS,
        ) as backlog,
    ):
        clock = AckClock(broker.publisher(topic))
        relay = ShardedRelay(backlog.store(), clock, RelaySettings(drain_timeout=5.0))
        consume = Consume(
            probe.tally,
            done=lambda: not probe.writing and probe.tally.complete(),
            idle=15.0,
            on_first=probe.on_first,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            tg.start_soon(broker.consume, topic, consume)
            await wait_until(lambda: len(relay.shards) >= ctx.size.shard_count, 10)
            total = int(rate * ctx.size.load_seconds)
            async with progress(f"{SCENARIO} {step}: received", total) as probe.tracker:
                achieved = await offer_load(backlog, topic, rate, ctx.size.load_seconds, probe)
                probe.writing = False
                await wait_until(probe.tally.complete, 30)
            relay.stop()
    ctx.results.correctness.append(probe.tally.result(SCENARIO, step))
    for kind, ends in (("commit->ack", clock.acked), ("commit->receive", probe.received)):
        samples = [ends[i] - t for i, t in probe.committed.items() if i in ends]
        summary = latency_summary(step, kind, rate, achieved, samples)
        ctx.results.latencies.append(summary)
        say(f"{SCENARIO} {step} {kind}: p50 {summary.p50:.1f} ms, p99 {summary.p99:.1f} ms")
        if kind == "commit->ack" and notify and rate == BAR_LOAD:
            add_bars(ctx, step, summary)


def add_bars(ctx: Context, step: str, summary: Latency) -> None:
    for name, bar in BARS.items():
        value = float(getattr(summary, name))
        ctx.results.measures.append(
            Measure(
                scenario=SCENARIO,
                step=f"{step}, commit->ack {name}",
                value=value,
                unit="ms",
                ratio=value,
                ratio_label="ms",
                bar=bar,
                details={"achieved_rate": summary.achieved},
            )
        )


async def run(ctx: Context) -> None:
    broker = ctx.broker("kafka")
    for notify in (True, False):
        for rate in ctx.size.loads:
            await measure(ctx, broker, rate, notify)
