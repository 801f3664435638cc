"""Scenario 9: log tailing for PostgreSQL (``--pg-mode wal``, ``--pg-wake-from-log``).

Write path: rounds alternate, as in scenario 2, between the business ``INSERT`` alone, with
``PostgresOutbox.add`` (table + NOTIFY, today's default), with ``add(notify=False)`` (what a
writer of the table store woken by the log pays), with ``PostgresWalOutbox.add`` (one
transactional logical decoding message, WAL-only), with the floor (a plain second 1 KiB
``INSERT``) and with the WAL-only floor (one raw ``pg_logical_emit_message`` of the 1 KiB
payload: no encoding, no checks, the least a WAL-only writer must send). Bar: WAL-only <= 1.2
x the INSERT alone; the WAL-only measure also shows its rate against the WAL-only floor's. No
slot is read during these rounds.

Throughput: the same backlog sent once by the raw Kafka producer and once by the WAL-only
relay (one slot reader) from messages emitted beforehand, one per transaction; messages /
seconds until the broker acknowledged the last one (bar >= 0.8 x raw). With ``--profile``
the WAL relay's run is profiled.

Latency: scenario 3's runs (``benchmarks.scenarios.latency.measure``: open-loop writer
process on 16 connections, ``outboxkit relay`` started as users start it, a Kafka consumer
here; commit -> receive and commit -> broker ack) in each mode -- table + NOTIFY, table
woken by the log (``--pg-wake-from-log``, writers without NOTIFY) and WAL-only (``--pg-mode
wal``, ``PostgresWalOutbox``) -- at each of the size's loads. A mode that reads the log is
set up by ``outboxkit migrate`` with its flags and its slot dropped by ``outboxkit
drop-slot`` after each run. Bars per mode at 1,000 msg/s: p50 <= 3 ms, p99 <= 15 ms commit
-> receive; at higher loads (5,000 msg/s, ``full``) the same percentiles with no bar, the
writer's achieved rate beside them.
"""

from __future__ import annotations

from contextlib import nullcontext

import asyncpg
import msgspec
from outboxkit_postgres import PostgresOutbox, PostgresWalOutbox, PostgresWalStore
from outboxkit_postgres.slot import drop_slot, ensure_slot

from benchmarks.scenarios import latency as scenario_3
from benchmarks.scenarios.throughput import baseline_rate, verify
from benchmarks.scenarios.write_path import (
    FLOOR,
    Statements,
    Variant,
    business_backlog,
    cost,
    write_round,
)
from benchmarks.support.cli_relay import Mode
from benchmarks.support.context import Context
from benchmarks.support.pg_backlog import PgBacklog
from benchmarks.support.profiling import profiled
from benchmarks.support.progress import progress, say
from benchmarks.support.relay_in_process import relay_until
from benchmarks.support.run_results import Bar, Measure
from benchmarks.support.throughput_floor import KafkaSender
from benchmarks.support.wal_floor import wal_floor
from benchmarks.support.workload import make_messages
from outboxkit.message import Message
from outboxkit.relay.settings import RelaySettings

__all__ = ["run"]

SCENARIO = "9 log tailing"
WRITE_BAR = Bar(op="<=", limit=1.2, text="alone / with WAL-only outbox <= 1.2")
THROUGHPUT_BAR = Bar(op=">=", limit=0.8, text="WAL-only pg -> kafka >= 0.8 x raw")
WAL = "with WAL-only outbox"
LATENCY_MODES: tuple[Mode, ...] = ("notify", "log", "wal")
WAL_FLOOR = "with raw pg_logical_emit_message (WAL-only floor)"
_EMIT = "SELECT pg_logical_emit_message(true, 'bench-floor', $1::bytea)"


async def raw_emit(conn: asyncpg.Connection, message: Message) -> None:
    """The WAL-only floor: the payload as one transactional logical decoding message."""
    await conn.execute(_EMIT, message.payload)


async def write_path(ctx: Context) -> None:
    size = ctx.size
    async with business_backlog(ctx, "wal_write") as backlog:
        schema = backlog.settings.schema
        st = Statements(schema)
        no_notify = PostgresOutbox(schema=schema, table=backlog.settings.table, notify=False)
        wal = PostgresWalOutbox(schema=schema, table=backlog.settings.table)
        variants = {
            "alone": Variant(st.insert),
            "with outbox (table + NOTIFY)": Variant(st.insert, backlog.outbox.add),
            "with outbox, no NOTIFY (woken by log)": Variant(st.insert, no_notify.add),
            WAL: Variant(st.insert, wal.add),
            FLOOR: Variant(st.insert, st.plain),
            WAL_FLOOR: Variant(st.insert, raw_emit),
        }
        conns = [await asyncpg.connect(ctx.servers.postgres) for _ in range(size.writers)]
        totals = dict.fromkeys(variants, 0)
        try:
            for _ in range(size.write_rounds):
                for label, variant in variants.items():
                    label_ = f"{SCENARIO}: {label}"
                    totals[label] += await write_round(conns, size.write_seconds, label_, variant)
        finally:
            for conn in conns:
                await conn.close()
    seconds = size.write_rounds * size.write_seconds
    rates = {label: total / seconds for label, total in totals.items()}
    alone = rates["alone"]
    say(f"{SCENARIO}: " + ", ".join(f"{v:,.0f} tx/s {k}" for k, v in rates.items()))
    w = size.writers
    for label, rate in rates.items():
        if label == "alone":
            continue
        measure = cost(
            f"insert + {label.removeprefix('with ')}, {w} writers",
            rate,
            (alone, "insert alone"),
            bar=WRITE_BAR if label == WAL else None,
            rounds=size.write_rounds,
            seconds_per_round=size.write_seconds,
            floor_tx_per_s=rates[FLOOR],
        )
        if label == WAL:
            floor = rates[WAL_FLOOR]
            measure = msgspec.structs.replace(
                measure,
                floor=floor,
                floor_label="raw pg_logical_emit_message",
                floor_ratio=rate / floor if floor else None,
            )
        ctx.results.measures.append(msgspec.structs.replace(measure, scenario=SCENARIO))


async def throughput(ctx: Context) -> None:
    size = ctx.size
    broker = ctx.broker("kafka")
    messages = make_messages("raw", size.messages, size.aggregates, size.payload_bytes)
    raw, _, _ = await baseline_rate(ctx, broker, messages, " (log tailing)")
    step = "WAL-only pg -> kafka" + (" (profiled)" if ctx.profile else "")
    async with (
        broker.destination("wal_kafka") as topic,
        ctx.backlog("pg", "wal_tp") as backlog,
    ):
        assert isinstance(backlog, PgBacklog)
        settings = msgspec.structs.replace(backlog.settings, mode="wal")
        store = PostgresWalStore(settings)
        await store.migrate()
        floor_slot = f"{store.slot_name}_floor"  # sees the same messages as the relay's
        async with backlog.pool.acquire() as conn:
            await ensure_slot(conn, floor_slot, None)  # and a publication of messages only
        try:
            batch = make_messages(topic, size.messages, size.aggregates, size.payload_bytes)
            wal = PostgresWalOutbox(schema=settings.schema, table=settings.table)
            async with (
                progress(f"{SCENARIO} {step}: emitting", len(batch)) as tracker,
                backlog.pool.acquire() as conn,
            ):
                for message in batch:
                    async with conn.transaction():
                        await wal.add(conn, message)
                    tracker.add()
            relay_settings = RelaySettings(batch_size=size.batch_size, drain_timeout=5.0)
            profiler = (
                profiled(ctx.out, "profile_pg_wal_kafka", ctx.results.profile)
                if ctx.profile
                else nullcontext()
            )
            async with progress(f"{SCENARIO} {step}: relay", len(batch)) as tracker, profiler:
                seconds, _ = await relay_until(
                    PostgresWalStore(settings),
                    broker.publisher(topic),
                    len(batch),
                    tracker,
                    relay_settings,
                )
            await verify(ctx, broker, topic, batch, f"{SCENARIO} {step}")
            floor_seconds = await _floor(ctx, store, floor_slot, batch)
        finally:
            async with backlog.pool.acquire() as conn:
                await drop_slot(conn, floor_slot)
            await store.drop_slot()
            await store.close()
    rate, floor = len(batch) / seconds, len(batch) / floor_seconds
    say(
        f"{SCENARIO} WAL-only pg -> kafka: {rate:,.0f} msg/s, floor {floor:,.0f} msg/s, "
        f"raw {raw:,.0f} msg/s"
    )
    ctx.results.measures.append(
        Measure(
            scenario=SCENARIO,
            step="WAL-only pg -> kafka",
            value=rate,
            unit="msg/s",
            baseline=raw,
            baseline_label="raw kafka client",
            ratio=rate / raw,
            ratio_label="x raw",
            bar=THROUGHPUT_BAR,
            floor=floor,
            floor_label="hand-written at-most-once slot reader",
            floor_ratio=rate / floor,
            details={"messages": len(batch), "slot_readers": 1, "floor_over_raw": floor / raw},
        )
    )


async def _floor(ctx: Context, store: PostgresWalStore, slot: str, batch: list[Message]) -> float:
    """Seconds the WAL-only floor (``benchmarks.support.wal_floor``) takes to send ``batch``
    from its own slot to a fresh topic; the topic is checked like the relay's."""
    broker = ctx.broker("kafka")
    step = f"{SCENARIO} WAL-only pg -> kafka floor"
    async with broker.destination("wal_floor") as topic:
        async with progress(f"{step}: relay", len(batch)):
            seconds = await wal_floor(
                ctx.servers.postgres,
                slot,
                store.names.wal_prefix,
                KafkaSender(ctx.servers.kafka, topic),
                len(batch),
            )
        await verify(ctx, broker, topic, batch, step)
    return seconds


async def latency(ctx: Context) -> None:
    """Commit -> receive (and commit -> ack) of each mode at each of the size's loads; the
    bars at 1,000 msg/s, in every one of the size's ``latency_rounds`` there (the modes
    alternate round by round, so background load hits each alike), the bare percentiles
    above it."""
    for rate in ctx.size.loads:
        held = rate == scenario_3.BAR_LOAD
        rounds = ctx.size.latency_rounds if held else 1
        runs: dict[Mode, list[scenario_3.Run]] = {mode: [] for mode in LATENCY_MODES}
        for n in range(1, rounds + 1):
            numbered = n if rounds > 1 else 0
            for mode in LATENCY_MODES:
                runs[mode].append(
                    await scenario_3.measure(ctx, rate, mode, scenario=SCENARIO, round_no=numbered)
                )
        if rate < scenario_3.BAR_LOAD:
            continue
        for mode, done in runs.items():
            step = scenario_3.step_name(rate, mode)
            summary = scenario_3.pooled(ctx, done, step)
            ctx.results.measures += scenario_3.bars(summary, done, SCENARIO, held=held)


async def run(ctx: Context) -> None:
    await write_path(ctx)
    await throughput(ctx)
    await latency(ctx)
