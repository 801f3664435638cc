"""The pg writer: atomic with the caller's transaction, one round trip, clear errors."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Awaitable, Callable

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresStore

from outboxkit.errors import InvalidMessageError, SchemaMissingError, TransactionRequiredError
from outboxkit.message import Message
from outboxkit.protocols import Lease
from outboxkit.sharding import shard_of
from outboxkit.testing import make_message

pytestmark = pytest.mark.anyio


async def _count(conn: asyncpg.Connection, schema: str) -> int:
    value: int = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    return value


async def _all_claimed(store: PostgresStore) -> list[Message]:
    out: list[Message] = []
    for shard in range(store.shard_count):
        lease = await store.acquire("reader", shard, 60)
        assert lease is not None
        out += [e.message for e in await store.claim(lease, 100_000)]
    return out


async def test_rollback_and_exception_leave_no_message(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection, schema: str
) -> None:
    tx = conn.transaction()
    await tx.start()
    await outbox.add(conn, make_message("a-1", 1))
    await tx.rollback()

    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await outbox.add(conn, make_message("a-1", 2))
            raise RuntimeError("business failure")

    assert await _count(conn, schema) == 0


async def test_commit_makes_exactly_the_messages_visible(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection
) -> None:
    messages = [make_message(f"agg-{i % 3}", i) for i in range(9)]
    async with conn.transaction():
        await conn.execute("CREATE TEMP TABLE orders (id int)")
        await conn.execute("INSERT INTO orders VALUES (1)")
        await outbox.add_many(conn, messages)

    claimed = await _all_claimed(store)
    assert sorted(str(m.id) for m in claimed) == sorted(str(m.id) for m in messages)
    assert {m.id: m for m in claimed} == {m.id: m for m in messages}


async def test_add_outside_a_transaction_is_refused(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection, schema: str
) -> None:
    with pytest.raises(TransactionRequiredError, match=r"^PostgresOutbox\.add needs the caller's"):
        await outbox.add(conn, make_message("a", 1))
    assert await _count(conn, schema) == 0


async def test_not_a_message_is_worded_as_in_every_writer(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection, schema: str
) -> None:
    text = "expected an outboxkit Message, got dict: build one with Message.create(...)"
    with pytest.raises(InvalidMessageError, match=f"^{re.escape(text)}$"):
        async with conn.transaction():
            await outbox.add_many(conn, [make_message("a", 1), {"not": "a message"}])  # type: ignore[list-item]
    assert await _count(conn, schema) == 0


async def test_batch_add_is_one_round_trip(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection, schema: str
) -> None:
    queries: list[str] = []
    conn.add_query_logger(lambda record: queries.append(record.query))
    async with conn.transaction():
        await outbox.add_many(conn, [make_message(f"agg-{i % 50}", i) for i in range(1000)])

    writer_queries = [q for q in queries if "outbox_add" in q]
    assert len(writer_queries) == 1, queries
    assert await _count(conn, schema) == 1000


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            lambda: Message(
                aggregate_type="o", aggregate_id="a", event_type="e", payload=b"x" * 2_000_000
            ),
            id="oversized",
        ),
        pytest.param(lambda: {"aggregate_id": "a"}, id="not-a-message"),
        pytest.param(lambda: make_message("a\x00b", 1), id="nul-in-aggregate-id"),
        pytest.param(lambda: make_message("a", 1, headers={"h": "x\x00"}), id="nul-in-header"),
    ],
)
async def test_bad_message_in_a_batch_writes_nothing(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection, schema: str, bad
) -> None:  # type: ignore[no-untyped-def]
    good = [make_message("a", i) for i in range(3)]
    with pytest.raises(InvalidMessageError):
        async with conn.transaction():
            await outbox.add_many(conn, [*good, bad()])
    assert await _count(conn, schema) == 0


def test_invalid_messages_are_rejected_before_any_write() -> None:
    with pytest.raises(InvalidMessageError, match="aggregate_id"):
        Message(aggregate_type="order", aggregate_id="", event_type="x")
    with pytest.raises(InvalidMessageError, match="JSON"):
        Message.create(aggregate_type="order", aggregate_id="1", event_type="x", payload={1j})
    with pytest.raises(InvalidMessageError, match="header"):
        Message(aggregate_type="order", aggregate_id="1", event_type="x", headers={"n": 1})  # type: ignore[dict-item]


async def test_missing_schema_names_the_fix(postgres_url: str, conn: asyncpg.Connection) -> None:
    outbox = PostgresOutbox(schema=f"missing_{uuid.uuid4().hex[:8]}")
    with pytest.raises(SchemaMissingError, match="outboxkit migrate --store pg"):
        async with conn.transaction():
            await outbox.add(conn, make_message("a", 1))


async def test_concurrent_writers_without_row_locks_keep_commit_order(
    store: PostgresStore, outbox: PostgresOutbox, postgres_url: str, schema: str
) -> None:
    """8 writers on 5 aggregates, random sleeps inside transactions, no row locks.

    Each transaction also appends to an audit table *after* the outbox add, while the
    writer's advisory lock on the aggregate is held: audit order per aggregate is the commit
    order. The claim (sequence) order per aggregate must equal it.
    """
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f"CREATE TABLE {schema}.audit (n bigserial, agg text, id uuid)")
    rng = random.Random(7)

    async def writer(w: int) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            for i in range(25):
                agg = f"agg-{rng.randrange(5)}"
                message = make_message(agg, w * 1000 + i)
                async with conn.transaction():
                    await anyio.sleep(rng.random() * 0.003)
                    await outbox.add(conn, message)
                    await anyio.sleep(rng.random() * 0.003)
                    await conn.execute(
                        f"INSERT INTO {schema}.audit (agg, id) VALUES ($1, $2)", agg, message.id
                    )
        finally:
            await conn.close()

    async with anyio.create_task_group() as tg:
        for w in range(8):
            tg.start_soon(writer, w)

    rows = await admin.fetch(f"SELECT agg, id FROM {schema}.audit ORDER BY n")
    await admin.close()
    expected: dict[str, list[uuid.UUID]] = {}
    for row in rows:
        expected.setdefault(row["agg"], []).append(row["id"])
    claimed: dict[str, list[uuid.UUID]] = {}
    for m in await _all_claimed(store):
        claimed.setdefault(m.aggregate_id, []).append(m.id)
    assert sum(map(len, claimed.values())) == 200
    assert claimed == expected


async def test_late_commit_with_lower_sequence_is_still_claimed(
    store: PostgresStore, outbox: PostgresOutbox, postgres_url: str
) -> None:
    """No high-water mark: a row committed after a higher-sequence row was acked is claimed."""
    from outboxkit.testing import aggregates_in_shard

    x, y = aggregates_in_shard(0, store.shard_count, 2)
    slow = await asyncpg.connect(postgres_url)
    fast = await asyncpg.connect(postgres_url)
    try:
        tx = slow.transaction()
        await tx.start()
        late = make_message(x, 1)
        await outbox.add(slow, late)  # draws the lower sequence, not yet committed
        early = make_message(y, 2)
        async with fast.transaction():
            await outbox.add(fast, early)

        lease = await store.acquire("relay", 0, 60)
        assert lease is not None
        first = await store.claim(lease, 100)
        assert [e.message.id for e in first] == [early.id]
        await store.ack(lease, first)

        await tx.commit()
        second = await store.claim(lease, 100)
        assert [e.message.id for e in second] == [late.id]
        assert second[0].position < first[0].position
    finally:
        await slow.close()
        await fast.close()


async def test_notify_wakes_the_relay(
    store: PostgresStore, wait_woken_by_commit: Callable[[float], Awaitable[None]]
) -> None:
    await store.wait(0.01)  # opens the LISTEN connection
    await wait_woken_by_commit(0.2)
    lease: Lease | None = await store.acquire("r", 0, 60)
    assert lease is not None


async def test_commits_between_waits_are_named_by_the_next_wait_at_once(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection
) -> None:
    """The relay calls ``wait`` only between groups of claims: the shards of commits made
    while nobody waited come back from the next call, without waiting for another commit."""
    await store.wait(0.01)  # opens the LISTEN connection
    messages = [make_message(f"agg-{i}", i) for i in range(6)]
    for message in messages:
        async with conn.transaction():
            await outbox.add(conn, message)
    expected = {shard_of(m.aggregate_id, store.shard_count) for m in messages}
    await anyio.sleep(0.2)  # the notifications arrive while nobody waits
    with anyio.fail_after(5):
        named = await store.wait(30)
    assert named is not None
    assert set(named) == expected
