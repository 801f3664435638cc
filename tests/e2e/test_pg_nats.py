"""End to end: PostgreSQL outbox → ``outboxkit relay`` processes → NATS JetStream.

Each test has its own pg schema and its own JetStream stream (with a 2 minute duplicate
window), runs three relay processes on 8 shards, and checks what the stream holds against the
commit order recorded by the writers (see ``pg_writers.AuditedWriters``): nothing lost, no duplicate
stored, first deliveries of each aggregate in commit order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from tests.e2e.checks import Delivery, Verdict, eventually, verdict
from tests.e2e.pg_writers import AuditedWriters, commit_order, create_audit_tables
from tests.e2e.readers import read_deliveries
from tests.e2e.relays import RelayProcess, outboxkit_env
from tests.support.nats import LocalNatsServer, Stream, make_stream, scratch_stream
from tests.support.postgres import outbox_schema, pg_connection

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(240)]

SHARDS = 8
RELAYS = 3
DUPLICATE_WINDOW = 120.0  # seconds
STOP_TIMEOUT = 15.0  # seconds from SIGTERM to SIGKILL


def relay_env(dsn: str, schema: str, nats_url: str, stream: str, **extra: Any) -> dict[str, str]:
    """The relays' settings, through ``OUTBOXKIT_*`` variables (as a deployment would)."""
    return outboxkit_env(
        pg_dsn=dsn,
        pg_schema=schema,
        pg_pool_min=1,
        pg_pool_max=4,
        nats_servers=nats_url,
        nats_stream=stream,
        batch_size=200,
        lease_ttl=2,
        poll_interval=0.5,
        **extra,
    )


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    """A migrated outbox of ``SHARDS`` shards and the writers' audit table, in a fresh schema."""
    async with outbox_schema(postgres_url, SHARDS) as name:
        await create_audit_tables(postgres_url, name)
        yield name


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with pg_connection(postgres_url) as conn:
        yield conn


async def _connect(url: str) -> Client:
    return await nats.connect(
        url, connect_timeout=5, reconnect_time_wait=0.2, max_reconnect_attempts=-1
    )


@pytest.fixture
async def shared_js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await _connect(nats_url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


@pytest.fixture
async def shared_stream(shared_js: JetStreamContext) -> AsyncIterator[Stream]:
    """A fresh stream on the shared server, deleted after the test."""
    async with scratch_stream(shared_js, duplicate_window=DUPLICATE_WINDOW) as stream:
        yield stream


class Relays:
    """The relay processes of one test; every one is stopped (or killed) at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.processes: list[RelayProcess] = []

    def start(self, count: int) -> list[RelayProcess]:
        base = len(self.processes)
        names = [f"relay{base + n}-{uuid.uuid4().hex[:6]}" for n in range(count)]
        started = [
            RelayProcess(name, self.env, self.log_dir, store="pg", publisher="nats").start()
            for name in names
        ]
        self.processes += started
        return started

    def stop_all(self) -> list[int | None]:
        return [p.stop(STOP_TIMEOUT) for p in self.processes]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-4000:]}" for p in self.processes)


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[Any]:
    made: list[Relays] = []

    def factory(env: dict[str, str]) -> Relays:
        group = Relays(env, tmp_path)
        made.append(group)
        return group

    yield factory
    for group in made:
        for process in group.processes:
            if process.running:
                process.stop(timeout=5)


@dataclass
class SharedServerRun:
    """One test on the shared NATS server: its outbox schema, a connection to it, its stream
    and the relays (none started yet) configured for both."""

    dsn: str
    schema: str
    db: asyncpg.Connection
    js: JetStreamContext
    stream: Any
    relays: Relays

    def writers(self) -> AuditedWriters:
        return AuditedWriters(self.dsn, self.schema, self.stream.subject("orders"))

    async def check(self, total: int) -> Verdict:
        return await check(self.js, self.stream, self.db, self.schema, total)


@pytest.fixture
def run(
    postgres_url: str,
    nats_url: str,
    schema: str,
    db: asyncpg.Connection,
    shared_js: JetStreamContext,
    shared_stream: Any,
    relays: Any,
) -> SharedServerRun:
    group = relays(relay_env(postgres_url, schema, nats_url, shared_stream.name))
    return SharedServerRun(postgres_url, schema, db, shared_js, shared_stream, group)


def aggregates(count: int) -> list[str]:
    base = uuid.uuid4().hex[:8]
    return [f"agg-{base}-{n}" for n in range(count)]


async def stream_count(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.messages)


async def pending(conn: asyncpg.Connection, schema: str) -> int:
    """Messages still in the outbox (not yet acknowledged by a relay)."""
    count: int = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    return count


async def drained(db: asyncpg.Connection, schema: str, timeout: float) -> float:
    async def empty() -> bool:
        return await pending(db, schema) == 0

    return await eventually(empty, timeout, "outbox drained by the relays", interval=0.2)


async def check(
    js: JetStreamContext, stream: Any, db: asyncpg.Connection, schema: str, total: int
) -> Verdict:
    committed = await commit_order(db, schema)
    assert sum(len(ids) for ids in committed.values()) == total
    deliveries = await read_deliveries(js, stream.name, stream.wildcard, timeout=30)
    return verdict(deliveries, committed)


def report(name: str, result: Verdict, started: float, extra: str = "") -> None:
    print(
        f"\n[{name}] delivered={result.delivered} duplicates={result.duplicates} "
        f"lost={len(result.lost)} order_violations={len(result.order_violations)} "
        f"time={time.monotonic() - started:.1f}s {extra}".rstrip()
    )


def assert_sound(result: Verdict, group: Relays) -> None:
    assert result.ok, f"{result.summary()}\n{group.logs()}"


# -- 1. throughput, order and completeness with three relays ---------------------------------


async def test_pg_to_nats_three_relays_concurrent_writers(run: SharedServerRun) -> None:
    total, started = 20_000, time.monotonic()
    group, writers = run.relays, run.writers()
    group.start(RELAYS)
    with anyio.fail_after(120):  # ~20 s on an idle 2-core machine
        await writers.run(total, aggregates(500), writers=8)
    written = time.monotonic() - started
    await drained(run.db, run.schema, timeout=60)
    assert [p.running for p in group.processes] == [True] * RELAYS, group.logs()
    assert group.stop_all() == [0] * RELAYS, group.logs()

    result = await run.check(total)
    report(
        "pg->nats 3 relays",
        result,
        started,
        f"(writes {written:.1f}s, {writers.transactions} transactions)",
    )
    assert_sound(result, group)
    assert result.delivered == total


# -- 2. SIGKILL of a relay while messages flow --------------------------------------------------


async def test_relay_sigkill_mid_batch_no_loss_no_duplicate(run: SharedServerRun) -> None:
    total, started = 12_000, time.monotonic()
    group, writers = run.relays, run.writers()
    db, schema, js, stream = run.db, run.schema, run.js, run.stream
    in_flight: set[str] = set()
    takeover = 0.0

    async def kill_while_flowing() -> None:
        nonlocal takeover

        # A backlog first, so the relays publish full batches when one of them is killed.
        await eventually(lambda: writers.committed >= 5_000, 40, "a backlog of 5,000 messages")
        victim = group.start(RELAYS)[0]

        async def flowing() -> bool:
            owned = await db.fetchval(
                f"SELECT count(*) FROM {schema}.outbox_leases WHERE owner = $1", victim.name
            )
            return owned > 0 and await stream_count(js, stream.name) >= 2_000

        await eventually(flowing, 40, "messages flowing through the victim relay", interval=0.05)
        victim.kill()
        killed = time.monotonic()
        # Published by the victim but not acknowledged: still in its shards' rows, already in
        # the stream (nobody else may publish those shards before its leases expire).
        last_seq = (await js.stream_info(stream.name)).state.last_seq
        rows = await db.fetch(
            f"SELECT o.id FROM {schema}.outbox AS o JOIN {schema}.outbox_leases AS l "
            "USING (shard) WHERE l.owner = $1",
            victim.name,
        )

        async def taken_over() -> bool:
            held = await db.fetchval(
                f"SELECT count(*) FROM {schema}.outbox_leases "
                "WHERE owner = $1 OR owner IS NULL OR expires_at <= now()",
                victim.name,
            )
            return int(held) == 0

        await eventually(taken_over, 20, "victim's shards taken over", interval=0.05)
        takeover = time.monotonic() - killed
        unacked = {str(r["id"]) for r in rows}
        stored = await read_deliveries(js, stream.name, stream.wildcard)
        in_flight.update(
            d.message_id for d in stored if d.position <= last_seq and d.message_id in unacked
        )

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_while_flowing)
            await writers.run(total, aggregates(500), writers=8)
    await drained(db, schema, timeout=45)
    assert not group.processes[0].running
    survivors = group.processes[1:]
    assert all(p.running for p in survivors), group.logs()
    assert [p.stop(STOP_TIMEOUT) for p in survivors] == [0] * len(survivors), group.logs()

    result = await run.check(total)
    report(
        "pg->nats SIGKILL",
        result,
        started,
        f"(published-unacked at kill, re-published and dropped by JetStream: "
        f"{len(in_flight)}; takeover {takeover:.1f}s after kill)",
    )
    assert_sound(result, group)
    assert result.delivered == total


# -- 3. NATS server restarted during a run ----------------------------------------------------


async def test_nats_restart_during_run(
    postgres_url: str,
    schema: str,
    db: asyncpg.Connection,
    local_nats: Callable[..., LocalNatsServer],
    relays: Any,
) -> None:
    total, started = 10_000, time.monotonic()
    server = local_nats()
    client: Client | None = None
    try:
        client = await _connect(server.url)
        js = client.jetstream()
        stream = await make_stream(js, duplicate_window=DUPLICATE_WINDOW)
        env = relay_env(
            postgres_url,
            schema,
            server.url,
            stream.name,
            nats_publish_timeout=2,
            backoff_initial=0.2,
            backoff_max=1,
            max_attempts=1000,
        )
        group: Relays = relays(env)
        writers = AuditedWriters(postgres_url, schema, stream.subject("orders"))
        outage = 0.0
        before = 0

        async def restart_while_flowing() -> None:
            nonlocal outage, before

            await eventually(lambda: writers.committed >= 4_000, 40, "a backlog of 4,000 messages")
            group.start(RELAYS)

            async def flowing() -> bool:
                return await stream_count(js, stream.name) >= 2_500

            await eventually(flowing, 40, "messages flowing to the private server")
            down = time.monotonic()
            await anyio.to_thread.run_sync(server.stop)  # SIGTERM: store flushed
            before = writers.committed
            await anyio.sleep(1.0)
            await anyio.to_thread.run_sync(server.start)
            outage = time.monotonic() - down

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(restart_while_flowing)
                await writers.run(total, aggregates(500), writers=8)
        await drained(db, schema, timeout=60)
        assert all(p.running for p in group.processes), group.logs()
        assert group.stop_all() == [0] * RELAYS, group.logs()

        result = await check(js, stream, db, schema, total)
        report(
            "pg->nats server restart",
            result,
            started,
            f"(outage {outage:.1f}s with {before} committed at the stop)",
        )
        assert_sound(result, group)
        assert result.delivered == total
    finally:
        if client is not None:
            await client.close()
        server.kill()


# -- the checker itself -------------------------------------------------------------------------


def test_verdict_detects_loss_duplicates_and_disorder() -> None:
    committed = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"]}

    def stream(*ids: str) -> list[Delivery]:
        return [Delivery(m[0], m, position=seq, msg_id_header=m) for seq, m in enumerate(ids, 1)]

    assert verdict(stream("a1", "b1", "a2", "b2", "a3"), committed).ok
    assert verdict(stream("a1", "b1", "a2", "b2", "a2", "a3"), committed).duplicates == 1
    assert verdict(stream("a1", "b1", "b2", "a3"), committed).lost == ["a2"]
    assert verdict(stream("a1", "a3", "b1", "a2", "b2"), committed).order_violations
    assert verdict(stream("a1", "b1", "a2", "b2", "a3", "c1"), committed).unexpected == ["c1"]
    wrong_header = [*stream("a1", "b1", "a2", "b2"), Delivery("a", "a3", 9, msg_id_header="x")]
    assert verdict(wrong_header, committed).bad_headers == 1
