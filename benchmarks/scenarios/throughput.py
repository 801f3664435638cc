"""Scenario 1: relay throughput from a pre-filled backlog, against the raw broker client.

For each pipeline the same messages (keys, headers, 1 KiB payloads) are sent once by the raw
client and once by an in-process :class:`ShardedRelay` from a backlog written by the store's
own writer; each rate is messages / seconds until the broker acknowledged the last one.
Both destinations are then read back by an independent consumer.
"""

from __future__ import annotations

import time
import traceback
from contextlib import nullcontext
from statistics import harmonic_mean

from benchmarks.support.consumers import Consume
from benchmarks.support.context import Context
from benchmarks.support.correctness import Tally
from benchmarks.support.profiling import profiled
from benchmarks.support.progress import progress, say
from benchmarks.support.relay_in_process import relay_until
from benchmarks.support.run_results import Bar, Measure
from benchmarks.support.sizes import Size
from benchmarks.support.targets import BrokerTarget
from benchmarks.support.workload import make_messages
from outboxkit.message import Message
from outboxkit.relay.settings import RelaySettings

__all__ = ["PIPELINES", "run"]

SCENARIO = "1 throughput"
PIPELINES = (("pg", "kafka"), ("pg", "nats"), ("mongodb", "kafka"))
MONGO_SHARDS = 4
"""Shard workers of mongodb -> kafka: FerretDB serves a few concurrent commands best (`small`:
2,252 msg/s on 4 shards, 1,336 on 64)."""
KAFKA_BAR = Bar(op=">=", limit=0.8, text="pg -> kafka >= 0.8 x raw")


def pipeline_messages(size: Size, topic: str, store: str) -> list[Message]:
    """The backlog of a pipeline: ``mongo_messages`` over a tenth as many aggregates for
    mongodb, the full size otherwise."""
    if store == "mongodb":
        count = size.mongo_messages
        return make_messages(topic, count, max(1, count // 10), size.payload_bytes)
    return make_messages(topic, size.messages, size.aggregates, size.payload_bytes)


async def verify(
    ctx: Context, broker: BrokerTarget, topic: str, messages: list[Message], step: str
) -> None:
    """Read ``topic`` back and record the correctness of ``step``."""
    tally = Tally(messages)
    async with progress(f"{SCENARIO} {step}: consumer", len(messages)) as tracker:
        consume = Consume(tally, idle=15.0, on_first=lambda _id, _t: tracker.add())
        await broker.consume(topic, consume)
    ctx.results.correctness.append(tally.result(SCENARIO, step))


async def baseline_rate(
    ctx: Context, broker: BrokerTarget, messages: list[Message], label: str = ""
) -> float:
    """Messages/s of the raw client sending ``messages``."""
    step = f"raw {broker.name}{label}"
    async with broker.destination(f"raw_{broker.name}") as topic:
        async with progress(f"{SCENARIO} {step}", len(messages)) as tracker:
            started = time.perf_counter()
            await broker.baseline(topic, messages, tracker)
            seconds = time.perf_counter() - started
        await verify(ctx, broker, topic, messages, step)
    return len(messages) / seconds


async def relay_rate(
    ctx: Context, store: str, broker: BrokerTarget, *, profile: bool, label: str = ""
) -> float:
    """Messages/s of the relay draining a backlog of the run's size."""
    size = ctx.size
    step = f"{store} -> {broker.name}{label}" + (" (profiled)" if profile else "")
    async with (
        broker.destination(f"{store}_{broker.name}") as topic,
        ctx.backlog(
            store, f"tp_{store}", shard_count=MONGO_SHARDS if store == "mongodb" else None
        ) as backlog,
    ):
        messages = pipeline_messages(size, topic, store)
        async with progress(f"{SCENARIO} {step}: filling {store}", len(messages)) as tracker:
            await backlog.fill(messages, tracker)
        settings = RelaySettings(batch_size=size.batch_size, drain_timeout=5.0)
        async with progress(f"{SCENARIO} {step}: relay", len(messages)) as tracker:
            profiler = (
                profiled(ctx.out, f"profile_{store}_{broker.name}", ctx.results.profile)
                if profile
                else nullcontext()
            )
            async with profiler:
                seconds, _ = await relay_until(
                    backlog.store(), broker.publisher(topic), len(messages), tracker, settings
                )
        await verify(ctx, broker, topic, messages, step)
    return len(messages) / seconds


async def pipeline(ctx: Context, store: str, broker_name: str) -> None:
    """Baseline, then relay, for one store -> broker pair."""
    size = ctx.size
    broker = ctx.broker(broker_name)
    messages = pipeline_messages(size, "raw", store)
    rounds = 1 if store == "mongodb" else size.throughput_rounds
    raw_rates, rates = [], []
    for index in range(rounds):
        label = f" (round {index + 1})" if rounds > 1 else ""
        raw_rates.append(await baseline_rate(ctx, broker, messages, label))
        rates.append(await relay_rate(ctx, store, broker, profile=False, label=label))
    # equal message counts per round: all messages over all seconds
    raw, rate = harmonic_mean(raw_rates), harmonic_mean(rates)
    say(f"{SCENARIO} {store} -> {broker_name}: {rate:,.0f} msg/s, raw {raw:,.0f} msg/s")
    ctx.results.measures.append(
        Measure(
            scenario=SCENARIO,
            step=f"{store} -> {broker_name}",
            value=rate,
            unit="msg/s",
            baseline=raw,
            baseline_label=f"raw {broker_name} client",
            ratio=rate / raw,
            ratio_label="x raw",
            bar=KAFKA_BAR if (store, broker_name) == ("pg", "kafka") else None,
            details={
                "messages": len(messages),
                "store_shards": MONGO_SHARDS if store == "mongodb" else size.shard_count,
                "rounds": rounds,
                "raw_per_round": raw_rates,
                "relay_per_round": rates,
            },
        )
    )


async def run(ctx: Context) -> None:
    """Measure every pipeline (a failing one is recorded, the others still run) and, with
    ``--profile``, profile pg -> kafka once more."""
    for store, broker_name in PIPELINES:
        if ctx.pipelines and f"{store}-{broker_name}" not in ctx.pipelines:
            continue
        try:
            await pipeline(ctx, store, broker_name)
        except Exception as exc:
            traceback.print_exc()
            ctx.results.errors.append(f"{SCENARIO} {store} -> {broker_name}: {exc!r}")
    if ctx.profile:
        await relay_rate(ctx, "pg", ctx.broker("kafka"), profile=True)
