"""End to end, WAL-only outbox (``--pg-mode wal``) → relay processes → Kafka.

Writers emit transactional logical decoding messages (``PostgresWalOutbox``); one relay at a
time reads the replication slot under the slot's lease, the others stand by. The checks are
those of the table store's end-to-end tests (``test_pg_kafka.py``): commit publishes once,
rollback nothing, per-aggregate order under concurrent writers, a killed holder, a paused
holder (fencing), Kafka unavailable, and the slot's confirmed position never passing a
message the broker has not acknowledged. The shared Kafka is never paused: relays that need an
outage reach it through a TCP proxy of the test (``tests.support.proxy.KafkaProxy``).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresWalOutbox

from outboxkit.message import Message
from tests.e2e.checks import eventually, slot_tenures
from tests.e2e.pg_writers import CommitLog, Writers
from tests.e2e.relays import RelayProcess
from tests.e2e.test_pg_kafka import LEASE_TTL, Rig, _assert_clean
from tests.support.kafka import topics
from tests.support.postgres import pg_connection, wal_outbox
from tests.support.private_postgres import PrivatePostgres
from tests.support.proxy import KafkaProxy

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

READ_AHEAD = 20 * 100
"""Messages a holder reads ahead of the broker (20 x batch size): the duplicates bound."""


class WalWriters(Writers):
    """The e2e writers on the WAL-only outbox. Its ``add`` takes no lock (commit order is the
    WAL's order); to know the commit order of one aggregate, as an application that versions
    its aggregates does, each transaction locks its aggregate (an advisory lock) first."""

    async def commit(self, aggregate_id: str, count: int) -> list[Message]:
        messages = [self.message(aggregate_id, n) for n in range(count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", aggregate_id)
            await conn.execute(
                f"INSERT INTO {self.business} (aggregate_id, n) VALUES ($1, $2)",
                aggregate_id,
                count,
            )
            await self.outbox.add_many(conn, messages)
            self.log.record(messages)
        return messages


class WalRig(Rig):
    """The rig of ``test_pg_kafka.py`` on a WAL-only outbox: relays in ``--pg-mode wal``,
    some reaching Kafka through a proxy of the test."""

    proxy: KafkaProxy | None = None

    def start_relay(self, name: str, batch_size: int = 100, **settings: object) -> RelayProcess:
        return super().start_relay(name, batch_size, pg_mode="wal", **settings)

    def start_relay_via_proxy(self, name: str) -> RelayProcess:
        """A relay reaching Kafka through the test's proxy (started with the first such)."""
        if self.proxy is None:
            self.proxy = KafkaProxy(self.kafka_bootstrap.split(",")[0])
            self.proxy.start()
        return self.start_relay(name, kafka_bootstrap_servers=self.proxy.address)

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return pg_connection(self.postgres_url)

    def stop(self) -> None:
        super().stop()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
async def rig(postgres_url: str, kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[WalRig]:
    async with (
        topics(kafka_bootstrap, partitions=6, prefix="okt-wal") as (topic,),
        wal_outbox(postgres_url, shards=4) as schema,
    ):
        rig = WalRig(postgres_url, kafka_bootstrap, schema, topic, tmp_path)
        async with rig.running(PostgresWalOutbox(schema=schema), WalWriters):  # type: ignore[arg-type]
            yield rig


@pytest.mark.timeout(60)
async def test_commit_publishes_once_rollback_and_exception_publish_nothing(
    rig: WalRig,
) -> None:
    rig.start_relay("relay-a")
    committed, doomed = await rig.writers.commit_roll_back_and_raise()

    result = await rig.delivered(timeout=30, settle=3)

    _assert_clean(result, rig, max_duplicates=0)
    read = [d.message_id for d in rig.reader.deliveries]
    assert sorted(read) == sorted(str(m.id) for m in committed), "exactly once, nothing else"
    assert not {str(m.id) for m in doomed} & set(read)


@pytest.mark.timeout(150)
async def test_three_relays_eight_writers_every_message_in_order_one_reader(
    rig: WalRig,
) -> None:
    for name in ("relay-a", "relay-b", "relay-c"):
        rig.start_relay(name)
    await rig.lease.holder()
    aggregates = [f"agg-{n}" for n in range(500)]

    await rig.writers.run(20_000, aggregates, writers=8)
    result = await rig.delivered(timeout=90)

    assert rig.writers.log.count == 20_000
    _assert_clean(result, rig, max_duplicates=0)
    tenures, ended = slot_tenures([r.log() for r in rig.relays])
    assert tenures == ended + 1, f"{tenures} tenures of the slot, {ended} ended:\n{rig.logs()}"


@pytest.mark.timeout(120)
async def test_sigkill_of_the_slot_holder_standby_takes_over_loses_nothing(
    rig: WalRig,
) -> None:
    rig.start_relay("relay-a")
    rig.start_relay("relay-b")
    victim = await rig.lease.holder()
    aggregates = [f"agg-{n}" for n in range(100)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.writers.run, 4000, aggregates, 4, 0.01)
        await eventually(lambda: len(rig.reader.ids) >= 800, 30, "800 read", 0.02)
        victim.signal(signal.SIGKILL)
        killed_at = anyio.current_time()
        survivor = next(r for r in rig.relays if r is not victim)
        await rig.lease.wait_for_holder(survivor.name, timeout=LEASE_TTL * 5)
        took = anyio.current_time() - killed_at
    result = await rig.delivered(timeout=60)

    _assert_clean(result, rig, max_duplicates=READ_AHEAD)
    assert took <= LEASE_TTL * 2.5, f"takeover after {took:.1f}s (lease ttl {LEASE_TTL}s)"


@pytest.mark.timeout(120)
async def test_paused_holder_whose_lease_was_taken_cannot_confirm_the_slot(
    rig: WalRig,
) -> None:
    rig.start_relay("relay-a")
    rig.start_relay("relay-b")
    paused = await rig.lease.holder()
    _, old_token, old_pid = await rig.lease.state()
    aggregates = [f"agg-{n}" for n in range(100)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.writers.run, 4000, aggregates, 4, 0.01)
        await eventually(lambda: len(rig.reader.ids) >= 800, 30, "800 read", 0.02)
        paused.signal(signal.SIGSTOP)
        try:
            other = next(r for r in rig.relays if r is not paused)
            await rig.lease.wait_for_holder(other.name, timeout=LEASE_TTL * 10)
            new_token, new_pid = await rig.lease.new_reader(old_pid, LEASE_TTL * 5)
        finally:
            paused.signal(signal.SIGCONT)
    result = await rig.delivered(timeout=60)

    assert new_token > old_token
    assert new_pid is not None and new_pid != old_pid, "the paused reader's stream was ended"
    try:
        await eventually(paused.saw_slot_loss, 15, "the paused holder saw its loss")
    except TimeoutError:
        raise AssertionError(paused.log()[-4000:]) from None
    assert (await rig.lease.state())[0] == other.name, "the paused relay took nothing back"
    _assert_clean(result, rig, max_duplicates=READ_AHEAD)


@pytest.mark.timeout(150)
async def test_kafka_unreachable_ten_seconds_slot_never_confirms_past_the_broker(
    rig: WalRig,
) -> None:
    relay = rig.start_relay_via_proxy("relay-a")
    await rig.lease.wait_for_holder("relay-a")
    assert rig.proxy is not None
    # Sequential commits, each with the WAL position after it: a message whose commit ended
    # at or below the slot's confirmed position must already be at the broker.
    after_commit: dict[str, int] = {}
    stop = anyio.Event()

    async def write() -> None:
        async with rig.connection() as conn:
            n = 0
            while not stop.is_set():
                (message,) = await rig.writers.commit(f"agg-{n % 50}", 1)
                after_commit[str(message.id)] = int(
                    await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
                )
                n += 1
                await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        await eventually(lambda: len(rig.reader.ids) >= 200, 30, "200 read", 0.02)
        rig.proxy.set("silent")
        try:
            for _ in range(10):
                await anyio.sleep(1)
                confirmed = await rig.lease.confirmed_lsn()
                await anyio.sleep(0.5)  # the reader's own lag behind the broker
                at_broker = rig.reader.ids
                passed = [i for i, lsn in list(after_commit.items()) if lsn <= confirmed]
                missing = [i for i in passed if i not in at_broker]
                assert not missing, f"slot confirmed past {len(missing)} unacknowledged messages"
        finally:
            rig.proxy.set("forwarding")
        await anyio.sleep(1)
        stop.set()
    result = await rig.delivered(timeout=90)

    assert "retry" in relay.log() or rig.reader.ids, rig.logs()
    _assert_clean(result, rig, max_duplicates=rig.writers.log.count)


@pytest.mark.timeout(180)
async def test_postgres_restart_mid_stream_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """On a private PostgreSQL (the shared one is never restarted): the relay reconnects
    and reads the slot from its confirmed position."""
    server = PrivatePostgres()
    server.start()
    try:
        async with (
            topics(kafka_bootstrap, partitions=6, prefix="okt-walrs") as (topic,),
            wal_outbox(server.url, shards=4) as schema,
        ):
            rig = WalRig(server.url, kafka_bootstrap, schema, topic, tmp_path)
            outbox = PostgresWalOutbox(schema=schema)
            async with pg_connection(server.url) as conn:
                await conn.execute(
                    f"CREATE TABLE {schema}.orders (id bigserial, aggregate_id text, n int)"
                )
            async with anyio.create_task_group() as tg:
                await tg.start(rig.reader.run)
                relay = rig.start_relay("relay-a")
                try:
                    await _write_across_a_restart(rig, server, outbox, topic)
                    result = await rig.delivered(timeout=60)
                finally:
                    relay.stop()
                    tg.cancel_scope.cancel()
            assert "reading failed" in relay.log(), "the restart was not noticed"
            _assert_clean(result, rig, max_duplicates=READ_AHEAD)
    finally:
        server.close()


async def _write_across_a_restart(
    rig: WalRig, server: PrivatePostgres, outbox: PostgresWalOutbox, topic: str
) -> None:
    """1,000 messages before and 1,000 after a restart, each phase from fresh pools."""
    log = CommitLog()
    for phase in range(2):
        pool = await asyncpg.create_pool(rig.postgres_url, min_size=4, max_size=4)
        try:
            rig.writers = WalWriters(pool, outbox, f"{rig.schema}.orders", topic)  # type: ignore[arg-type]
            rig.writers.log = log
            await rig.writers.run(1000, [f"agg-{n}" for n in range(50)], 4, seed=phase + 1)
        finally:
            await pool.close()
        if phase == 0:
            await eventually(lambda: len(rig.reader.ids) >= 300, 30, "300 read", 0.05)
            server.restart()


@pytest.mark.timeout(90)
async def test_exit_when_idle_stops_only_once_the_slot_is_drained(rig: WalRig) -> None:
    """Messages committed before the relay starts, and while it runs but cannot read the
    slot yet (another owner holds the slot's lease for 8 s): the relay stops by itself, with
    status 0, only once every one is at the broker, exactly once and in order."""
    await rig.lease.hold("someone-else", 8.0)

    status = await rig.relay_exiting_when_idle(before=600, during=400)
    result = await rig.delivered(timeout=10)

    assert status == 0, rig.logs()
    assert "nothing pending: stopping (exit_when_idle)" in rig.relays[0].log()
    assert rig.writers.log.count == 1000
    _assert_clean(result, rig, max_duplicates=0)


@pytest.mark.timeout(60)
async def test_an_idle_outbox_holds_no_wal_back(rig: WalRig) -> None:
    """Other tables are written, the outbox is not: the heartbeat moves the slot along."""
    rig.start_relay("relay-a")
    await rig.lease.wait_for_holder("relay-a")
    async with rig.connection() as conn:
        await conn.execute(f"CREATE TABLE {rig.schema}.other (n int)")
        await conn.execute(f"INSERT INTO {rig.schema}.other SELECT generate_series(1, 1000)")
        written = int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))

    async def passed() -> bool:
        return await rig.lease.confirmed_lsn() >= written

    await eventually(passed, 10, "the slot confirmed past the other tables' WAL", 0.2)
