"""Scenario 1: relay throughput from a pre-filled backlog, against the raw broker client and
against a hand-written minimal relay (the floor).

For each pipeline, in each round, the same messages (keys, headers, 1 KiB payloads) are sent
three ways:

- raw: the fastest plain use of the broker's client (``benchmarks.support.baselines``:
  records prepared before the clock, several ways of calling the client tried, the fastest
  kept);
- floor: a hand-written at-most-once relay moving a backlog written by the store's own writer
  (``benchmarks.support.throughput_floor``): the least any outbox must do here;
- relay: an in-process :class:`ShardedRelay` moving the same backlog.

Each rate is messages / seconds until the broker acknowledged the last one; the relay's time
includes opening its store and publisher and taking its leases. The fastest baseline, the
floor and the relay's destinations are then read back by an independent consumer.
"""

from __future__ import annotations

import traceback
from contextlib import AsyncExitStack, nullcontext
from statistics import harmonic_mean

from benchmarks.support.consumers import Consume
from benchmarks.support.context import Context
from benchmarks.support.correctness import Tally
from benchmarks.support.heap import frozen_heap
from benchmarks.support.profiling import profiled
from benchmarks.support.progress import progress, say
from benchmarks.support.relay_in_process import relay_until
from benchmarks.support.run_results import Bar, Measure
from benchmarks.support.sizes import Size
from benchmarks.support.targets import BrokerTarget
from benchmarks.support.throughput_floor import FLOOR_WORKERS
from benchmarks.support.workload import make_messages
from outboxkit.message import Message
from outboxkit.relay.settings import RelaySettings

__all__ = ["PIPELINES", "run"]

SCENARIO = "1 throughput"
PIPELINES = (("pg", "kafka"), ("pg", "nats"), ("mongodb", "kafka"))
MONGO_SHARDS = 4
"""Shard workers of mongodb -> kafka: FerretDB serves a few concurrent commands best (`small`:
2,252 msg/s on 4 shards, 1,336 on 64)."""
KAFKA_BAR = Bar(op=">=", limit=0.6, text=">= 0.6 x raw")
KAFKA_FLOOR_BAR = Bar(op=">=", limit=0.9, text=">= 0.9 x floor")


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
) -> tuple[float, str, dict[str, float]]:
    """Messages/s of the fastest way of using the raw client, its name, and every way's."""
    rates: dict[str, float] = {}
    async with AsyncExitStack() as stack:
        topics = {}
        for variant in broker.baselines():
            topic = await stack.enter_async_context(broker.destination(f"raw_{broker.name}"))
            step = f"{SCENARIO} raw {broker.name}{label}: {variant}"
            with frozen_heap():
                async with progress(step, len(messages)):
                    seconds = await broker.baseline(topic, messages, variant)
            rates[variant], topics[variant] = len(messages) / seconds, topic
        best = max(rates, key=rates.__getitem__)
        say(f"{SCENARIO} raw {broker.name}{label}: fastest {best}, {rates[best]:,.0f} msg/s")
        await verify(ctx, broker, topics[best], messages, f"raw {broker.name}{label}")
    return rates[best], best, rates


FLOOR_BATCHES = (500, 2000)
"""Rows per ``DELETE ... RETURNING`` the pg floor tries in each round, keeping the fastest
(like the raw baseline's batch settings): the floor is the least a table outbox must do."""


async def floor_rate(
    ctx: Context, store: str, broker: BrokerTarget, label: str = ""
) -> tuple[float, dict[int, float]]:
    """Messages/s of the hand-written at-most-once relay on a backlog of the run's size, at
    its fastest batch size (pg: each of :data:`FLOOR_BATCHES`), and the rate of each."""
    batches = FLOOR_BATCHES if store == "pg" else (ctx.size.batch_size,)
    rates = {batch: await _floor_once(ctx, store, broker, batch, label) for batch in batches}
    return max(rates.values()), rates


async def _floor_once(
    ctx: Context, store: str, broker: BrokerTarget, batch: int, label: str
) -> float:
    rows = f", {batch} rows a DELETE" if store == "pg" else ""
    step = f"{store} -> {broker.name} floor{rows}{label}"
    shards = MONGO_SHARDS if store == "mongodb" else ctx.size.shard_count
    async with (
        broker.destination(f"floor_{store}_{broker.name}") as topic,
        ctx.backlog(store, f"fl_{store}", shard_count=shards) as backlog,
    ):
        messages = pipeline_messages(ctx.size, topic, store)
        async with progress(f"{SCENARIO} {step}: filling {store}", len(messages)) as tracker:
            await backlog.fill(messages, tracker)
        with frozen_heap():
            async with progress(f"{SCENARIO} {step}: relay", len(messages)):
                sender = broker.floor_sender(topic)
                seconds = await backlog.floor(sender, batch, len(messages))
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
            with frozen_heap():
                async with profiler:
                    seconds, _ = await relay_until(
                        backlog.store(), broker.publisher(topic), len(messages), tracker, settings
                    )
        await verify(ctx, broker, topic, messages, step)
    return len(messages) / seconds


async def pipeline(ctx: Context, store: str, broker_name: str) -> None:
    """Baseline, floor, then relay, for one store -> broker pair."""
    size = ctx.size
    broker = ctx.broker(broker_name)
    messages = pipeline_messages(size, "raw", store)
    rounds = 1 if store == "mongodb" else size.throughput_rounds
    raw_rates, floor_rates, rates, fastest, variants = [], [], [], [], []
    floor_variants = []
    for index in range(rounds):
        label = f" (round {index + 1})" if rounds > 1 else ""
        raw, variant, tried = await baseline_rate(ctx, broker, messages, label)
        raw_rates.append(raw)
        fastest.append(variant)
        variants.append(tried)
        floor, floor_tried = await floor_rate(ctx, store, broker, label)
        floor_rates.append(floor)
        floor_variants.append(floor_tried)
        rates.append(await relay_rate(ctx, store, broker, profile=False, label=label))
    # equal message counts per round: all messages over all seconds
    raw, floor, rate = harmonic_mean(raw_rates), harmonic_mean(floor_rates), harmonic_mean(rates)
    say(
        f"{SCENARIO} {store} -> {broker_name}: {rate:,.0f} msg/s, floor {floor:,.0f} msg/s, "
        f"raw {raw:,.0f} msg/s"
    )
    barred = (store, broker_name) == ("pg", "kafka")
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
            bar=KAFKA_BAR if barred else None,
            floor=floor,
            floor_label="hand-written at-most-once relay",
            floor_ratio=rate / floor,
            floor_bar=KAFKA_FLOOR_BAR if barred else None,
            details={
                "messages": len(messages),
                "store_shards": MONGO_SHARDS if store == "mongodb" else size.shard_count,
                "rounds": rounds,
                "raw_per_round": raw_rates,
                "raw_fastest_per_round": fastest,
                "raw_variants_per_round": variants,
                "floor_per_round": floor_rates,
                "floor_rows_per_delete_per_round": floor_variants,
                "floor_workers": FLOOR_WORKERS,
                "relay_per_round": rates,
                "floor_over_raw": floor / raw,
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
