"""End to end, Postgres outbox → relay processes → Kafka, checked by a consumer by message id.

Relays are real ``outboxkit relay --store pg --publisher kafka`` processes configured through
``OUTBOXKIT_*`` variables; faults are real signals (SIGKILL, SIGSTOP/SIGCONT) to relays and to
the Kafka broker of ``scripts/services``.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from tests.e2e.checks import Verdict, eventually, verdict
from tests.e2e.pg_writers import Writers
from tests.e2e.readers import TopicReader
from tests.e2e.relays import RelayProcess, SlotLease, outboxkit_env
from tests.support.kafka import kafka_pid, topics
from tests.support.postgres import outbox_schema

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LEASE_TTL = 2.0


class Rig:
    """One test's outbox schema, Kafka topic, topic reader, writers and relay processes."""

    def __init__(
        self, postgres_url: str, kafka_bootstrap: str, schema: str, topic: str, tmp: Path
    ) -> None:
        self.postgres_url, self.kafka_bootstrap = postgres_url, kafka_bootstrap
        self.schema, self.topic, self.tmp = schema, topic, tmp
        self.settings = PostgresSettings(dsn=postgres_url, schema=schema, table="outbox")
        self.relays: list[RelayProcess] = []
        self.reader = TopicReader(kafka_bootstrap, topic)
        self.writers: Writers

        self.lease = SlotLease(postgres_url, schema, self.relays)
        """The replication slot's lease, for the outboxes that read one (log tailing)."""

    def relay_env(self, batch_size: int, **settings: object) -> dict[str, str]:
        """The relays' ``OUTBOXKIT_*`` variables; ``settings`` add to or replace these."""
        defaults: dict[str, object] = dict(
            pg_dsn=self.postgres_url,
            pg_schema=self.schema,
            pg_table="outbox",
            kafka_bootstrap_servers=self.kafka_bootstrap,
            kafka_request_timeout_ms="2000",
            kafka_delivery_timeout_ms="3000",
            batch_size=batch_size,
            lease_ttl=LEASE_TTL,
            poll_interval="0.5",
            backoff_initial="0.2",
            backoff_max="1.0",
            max_attempts="1000",
        )
        return outboxkit_env(**(defaults | settings))

    def start_relay(self, name: str, batch_size: int = 100, **settings: object) -> RelayProcess:
        env = self.relay_env(batch_size, **settings)
        relay = RelayProcess(name, env, self.tmp, store="pg", publisher="kafka").start()
        self.relays.append(relay)
        return relay

    async def start_relays(
        self, names: list[str], batch_size: int, shards_each: int, **settings: object
    ) -> list[RelayProcess]:
        """Relay processes called ``names`` (with ``settings``: ``OUTBOXKIT_*``), once each
        holds its fair share of shards."""
        relays = [self.start_relay(name, batch_size, **settings) for name in names]
        await self.wait_for_shards(dict.fromkeys(names, shards_each))
        return relays

    @asynccontextmanager
    async def writing(self, total: int, read_first: int) -> AsyncIterator[None]:
        """4 writers commit ``total`` messages over 100 aggregates in the background; the
        block runs once ``read_first`` were read (the relays are mid-stream) and the context
        exits once all were written."""
        aggregates = [f"agg-{n}" for n in range(100)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.writers.run, total, aggregates, 4, 0.01)
            await self.read_at_least(read_first)
            yield

    @asynccontextmanager
    async def relay_a_mid_stream(
        self, batch_size: int
    ) -> AsyncIterator[tuple[RelayProcess, list[int]]]:
        """Relays ``relay-a`` and ``relay-b`` (2 shards each) while 4000 messages are written:
        the block runs mid-stream (800 read) with ``relay-a`` and the shards it holds then, and
        the context exits once all were written."""
        relay_a, _ = await self.start_relays(["relay-a", "relay-b"], batch_size, shards_each=2)
        async with self.writing(4000, read_first=800):
            yield relay_a, await self.held_shards("relay-a")

    async def relay_exiting_when_idle(self, before: int, during: int, **settings: object) -> int:
        """``before`` messages committed, then relay ``relay-a`` started with
        ``exit_when_idle`` and ``during`` more committed once it runs (20 aggregates, 4
        writers), with ``settings``; the relay's exit status once it stopped by itself."""
        aggregates = [f"agg-{n}" for n in range(20)]
        await self.writers.run(before, aggregates, 4)
        relay = self.start_relay("relay-a", exit_when_idle="true", **settings)
        await eventually(lambda: "starting on" in relay.log(), 20, "relay-a runs", 0.05)
        await self.writers.run(during, aggregates, 4)
        assert relay.running, f"exited before the messages committed while it ran:\n{self.logs()}"
        return await relay.exited(timeout=60)

    async def commit_backlog(self, total: int, aggregates: int) -> None:
        """``total`` messages over ``aggregates`` aggregates, interleaved, in one transaction."""
        writers = self.writers
        messages = [writers.message(f"agg-{n % aggregates}", n) for n in range(total)]
        async with writers.pool.acquire() as conn, conn.transaction():
            await writers.outbox.add_many(conn, messages)
        writers.log.record(messages)

    async def pending(self, shards: list[int]) -> int:
        """Messages pending in ``shards``."""
        count: int = await self.writers.pool.fetchval(
            f"SELECT count(*) FROM {self.schema}.outbox WHERE shard = ANY($1)", shards
        )
        return count

    async def held_shards(self, owner: str) -> list[int]:
        """Shards ``owner`` holds now (unexpired, by the database clock)."""
        store = PostgresStore(self.settings)
        await store.open()
        try:
            leases = await store.leases()
        finally:
            await store.close()
        return [
            info.shard
            for info in leases
            if info.owner == owner and info.expires_in is not None and info.expires_in > 0
        ]

    async def wait_for_shards(self, owners: dict[str, int], timeout: float = 20) -> None:
        """Until each owner holds exactly its number of shards."""

        async def held() -> bool:
            return {o: len(await self.held_shards(o)) for o in owners} == owners

        await eventually(held, timeout, f"shards held {owners}", 0.2)

    async def read_at_least(self, count: int) -> None:
        """Until ``count`` distinct messages were read: the relays are mid-stream."""
        await eventually(lambda: len(self.reader.ids) >= count, 30, f"{count} read", 0.02)

    async def delivered(self, timeout: float, settle: float = 1.5) -> Verdict:
        """Wait until every committed message was read (or ``timeout``), then judge."""
        await self.reader.wait_for(self.writers.log.ids, timeout, settle)
        return verdict(self.reader.deliveries, self.writers.log.by_aggregate)

    def logs(self) -> str:
        return "\n".join(f"--- {r.name}\n{r.log()[-3000:]}" for r in self.relays)

    @asynccontextmanager
    async def running(
        self, outbox: PostgresOutbox, writers: type[Writers] = Writers
    ) -> AsyncIterator[Rig]:
        """``writers`` on ``outbox`` (8 pooled connections) with their business table, and
        the topic reader running; on exit the relays stopped and the pool closed."""
        pool = await asyncpg.create_pool(self.postgres_url, min_size=8, max_size=8)
        try:
            self.writers = writers(pool, outbox, f"{self.schema}.orders", self.topic)
            await self.writers.create_business_table()
            async with anyio.create_task_group() as tg:
                await tg.start(self.reader.run)
                try:
                    yield self
                finally:
                    self.stop()
                    tg.cancel_scope.cancel()
        finally:
            await pool.close()

    def stop(self) -> None:
        """Stop every relay."""
        for relay in self.relays:
            relay.stop()


@pytest.fixture
def shard_count() -> int:
    """Shards of the outbox; a test overrides it with ``parametrize("shard_count", [n])``."""
    return 4


@pytest.fixture
async def rig(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path, shard_count: int
) -> AsyncIterator[Rig]:
    """A migrated outbox of ``shard_count`` shards in a fresh schema, a 6-partition topic with
    a running reader, writers; relays stopped and everything removed afterwards."""
    async with (
        topics(kafka_bootstrap, partitions=6, prefix="okt-e2e") as (topic,),
        outbox_schema(postgres_url, shard_count) as schema,
    ):
        rig = Rig(postgres_url, kafka_bootstrap, schema, topic, tmp_path)
        async with rig.running(PostgresOutbox(schema=schema)):
            yield rig


@pytest.fixture
def kafka_resumed() -> Iterator[None]:
    """Make sure the shared Kafka broker runs again even if an outage test fails midway."""
    yield
    os.kill(kafka_pid(), signal.SIGCONT)


def _assert_clean(result: Verdict, rig: Rig, max_duplicates: int = 0, killed: int = 0) -> None:
    per_killed = f", {result.duplicates / killed:g} per killed relay" if killed else ""
    print(f"verdict: {result.summary()} (bound on duplicates: {max_duplicates}{per_killed})")
    details = f"{result.summary()}\n{rig.logs()}"
    assert not result.lost, f"lost messages: {details}"
    assert not result.unexpected, f"messages that were never committed: {details}"
    assert not result.order_violations, f"per-aggregate order broken: {details}"
    assert result.duplicates <= max_duplicates, f"too many duplicates: {details}"


@pytest.mark.timeout(60)
async def test_commit_publishes_once_rollback_and_exception_publish_nothing(rig: Rig) -> None:
    rig.start_relay("relay-a")
    committed, doomed = await rig.writers.commit_roll_back_and_raise()

    result = await rig.delivered(timeout=30, settle=3)

    _assert_clean(result, rig, max_duplicates=0)
    read = [d.message_id for d in rig.reader.deliveries]
    assert sorted(read) == sorted(str(m.id) for m in committed), "exactly once, nothing else"
    assert not {str(m.id) for m in doomed} & set(read)


@pytest.mark.parametrize("shard_count", [6])
@pytest.mark.timeout(150)
async def test_three_relays_eight_unlocked_writers_every_message_in_order(rig: Rig) -> None:
    await rig.start_relays(["relay-a", "relay-b", "relay-c"], batch_size=200, shards_each=2)
    aggregates = [f"agg-{n}" for n in range(500)]

    await rig.writers.run(20_000, aggregates, writers=8)
    result = await rig.delivered(timeout=90)

    assert rig.writers.log.count == 20_000
    _assert_clean(result, rig, max_duplicates=0)


@pytest.mark.timeout(120)
async def test_sigkill_mid_batch_then_takeover_loses_nothing(rig: Rig) -> None:
    batch_size = 50
    async with rig.relay_a_mid_stream(batch_size) as (victim, held):
        victim.signal(signal.SIGKILL)
    await rig.wait_for_shards({"relay-b": 4}, timeout=LEASE_TTL * 10)
    result = await rig.delivered(timeout=60)

    assert held, "the killed relay held no shard: nothing was tested"
    _assert_clean(result, rig, max_duplicates=batch_size * len(held), killed=1)


@pytest.mark.timeout(120)
async def test_sigkill_during_backlog_resends_little(rig: Rig) -> None:
    """A relay killed while it works through a backlog in batches of 500, each published in
    several produce requests (batches of 4 KiB per partition, as 500 records of about 3 KB
    would need with the default 256 KiB), re-sends only what Kafka had acknowledged but the
    database had not yet."""
    batch_size = 500
    victim, _ = await rig.start_relays(
        ["relay-a", "relay-b"], batch_size, shards_each=2, kafka_max_batch_size=4096
    )
    held = await rig.held_shards("relay-a")
    await rig.commit_backlog(30_000, aggregates=100)
    backlog = await rig.pending(held)

    async def under_way() -> bool:  # 2000 of its shards' messages acknowledged, many to go
        return await rig.pending(held) <= backlog - 2000

    await eventually(under_way, 30, "relay-a under way", 0.01)
    await anyio.sleep(random.uniform(0, 0.2))  # not always just after an ack: any phase
    victim.kill()
    await rig.wait_for_shards({"relay-b": 4}, timeout=LEASE_TTL * 10)
    result = await rig.delivered(timeout=90)

    assert held, "the killed relay held no shard: nothing was tested"
    # acked as Kafka answers: less than one claimed batch although it had one per shard in
    # flight (acking per claimed batch re-sent up to 929 in 10 runs; this, up to 236)
    _assert_clean(result, rig, max_duplicates=batch_size, killed=1)


@pytest.mark.timeout(120)
async def test_paused_relay_whose_lease_was_taken_cannot_ack(rig: Rig) -> None:
    batch_size = 50
    async with rig.relay_a_mid_stream(batch_size) as (paused, held):
        paused.signal(signal.SIGSTOP)
        await rig.wait_for_shards({"relay-a": 0, "relay-b": 4}, timeout=LEASE_TTL * 10)
        paused.signal(signal.SIGCONT)
    result = await rig.delivered(timeout=60)

    assert held, "the paused relay held no shard: nothing was tested"
    await eventually(lambda: "lease lost" in paused.log(), 10, "the paused relay saw its loss")
    _assert_clean(result, rig, max_duplicates=batch_size * len(held))


@pytest.mark.timeout(150)
async def test_kafka_paused_ten_seconds_relay_retries_and_delivers_all(
    rig: Rig, kafka_resumed: None
) -> None:
    (relay,) = await rig.start_relays(["relay-a"], batch_size=100, shards_each=4)

    async with rig.writing(3000, read_first=500):
        os.kill(kafka_pid(), signal.SIGSTOP)
        try:
            await anyio.sleep(10)
        finally:
            os.kill(kafka_pid(), signal.SIGCONT)
    result = await rig.delivered(timeout=90)

    assert "retry in" in relay.log(), f"the relay never retried:\n{rig.logs()}"
    _assert_clean(result, rig, max_duplicates=rig.writers.log.count)
