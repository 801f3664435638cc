"""Concurrent writers of the Postgres outbox in the end-to-end tests, whose commit order per
aggregate is known (the outbox schema: ``tests.support.postgres.outbox_schema``).

Two ways to know the commit order, both relying on ``PostgresOutbox.add_many`` holding a
transaction-scoped advisory lock on each aggregate of the transaction until commit, so a
later writer of the same aggregate cannot get past its ``add_many`` before the earlier one
commits:

* ``Writers`` records the message ids in memory right after ``add_many`` (``CommitLog``);
* ``AuditedWriters`` inserts them, after ``add_many`` and in the same transaction, into a test
  table ``<schema>.audit(seq bigserial, ...)``: ordering one aggregate's audit rows by ``seq``
  gives its commit order (``commit_order``), independently of what the relays do.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox

from outboxkit.message import Message
from tests.e2e.checks import committed_ids
from tests.e2e.writers import order_changed, run_writers
from tests.support.postgres import execute

__all__ = [
    "AuditedWriters",
    "CommitLog",
    "Writers",
    "commit_order",
    "create_audit_tables",
]


# -- commit order recorded in memory ---------------------------------------------------------


class CommitLog:
    """Message ids per aggregate in commit order, as the writers committed them."""

    def __init__(self) -> None:
        self.by_aggregate: defaultdict[str, list[str]] = defaultdict(list)
        self.count = 0

    def record(self, messages: Sequence[Message]) -> None:
        for m in messages:
            self.by_aggregate[m.aggregate_id].append(str(m.id))
        self.count += len(messages)

    @property
    def ids(self) -> set[str]:
        return committed_ids(self.by_aggregate)


class Writers:
    """Concurrent business transactions on a pool, each adding 1-4 outbox messages of one
    aggregate without locking the aggregate's row (the outbox writer serialises writers of
    one aggregate itself); the commit order goes to ``log``."""

    def __init__(self, pool: asyncpg.Pool, outbox: PostgresOutbox, business: str, topic: str):
        self.pool, self.outbox, self.business, self.topic = pool, outbox, business, topic
        self.log = CommitLog()

    async def create_business_table(self) -> None:
        await self.pool.execute(
            f"CREATE TABLE {self.business} (id bigserial PRIMARY KEY, aggregate_id text, n int)"
        )

    async def run(
        self, total: int, aggregates: Sequence[str], writers: int, pause: float = 0.0, seed: int = 1
    ) -> None:
        """``writers`` concurrent writers commit ``total`` messages over ``aggregates``, 1-4
        messages of one aggregate per transaction, pausing ``pause`` s between transactions."""

        async def write(_: int, rng: random.Random, count: int) -> None:
            await self.commit(rng.choice(aggregates), count)
            if pause:
                await anyio.sleep(pause)

        await run_writers(total, writers, (1, 4), write, seed)

    async def commit_roll_back_and_raise(self) -> tuple[list[Message], list[Message]]:
        """Commit 3 messages of ``order-1``; roll back 2 of ``order-2``; raise out of a
        transaction that added 1 of ``order-1``; commit 1 of ``order-3``. ``(committed,
        doomed)``: the messages that must reach the broker once, and those that never may."""
        doomed: list[Message] = []
        committed = await self.commit("order-1", 3)
        async with self.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            doomed += [self.message("order-2", n) for n in range(2)]
            await self.outbox.add_many(conn, doomed[-2:])
            await tx.rollback()
        with pytest.raises(RuntimeError, match="business rule"):
            async with self.pool.acquire() as conn, conn.transaction():
                doomed += [self.message("order-1", 9)]
                await self.outbox.add(conn, doomed[-1])
                raise RuntimeError("business rule violated")
        committed += await self.commit("order-3", 1)
        return committed, doomed

    async def commit(self, aggregate_id: str, count: int) -> list[Message]:
        """One committed business transaction with ``count`` messages of ``aggregate_id``."""
        messages = [self.message(aggregate_id, n) for n in range(count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self.business} (aggregate_id, n) VALUES ($1, $2)",
                aggregate_id,
                count,
            )
            await self.outbox.add_many(conn, messages)
            # Recorded before COMMIT but after the add: a writer of the same aggregate waits on
            # the outbox's advisory lock until this transaction ends, so it records later.
            self.log.record(messages)
        return messages

    def message(self, aggregate_id: str, n: int) -> Message:
        return order_changed(aggregate_id, self.topic, n=n)


# -- commit order recorded in the database ---------------------------------------------------


async def create_audit_tables(dsn: str, schema: str) -> None:
    """The audit table of ``AuditedWriters`` and their business table, in ``schema``."""
    await execute(
        dsn,
        f"CREATE TABLE {schema}.audit (seq bigserial PRIMARY KEY, "
        "aggregate_id text NOT NULL, message_id uuid NOT NULL)",
        f"CREATE TABLE {schema}.business (id bigserial PRIMARY KEY, "
        "aggregate_id text NOT NULL, n int NOT NULL)",
    )


async def commit_order(conn: asyncpg.Connection, schema: str) -> dict[str, list[str]]:
    """Message ids per aggregate in commit order (from the audit table)."""
    rows = await conn.fetch(f"SELECT aggregate_id, message_id FROM {schema}.audit ORDER BY seq")
    order: defaultdict[str, list[str]] = defaultdict(list)
    for row in rows:
        order[row["aggregate_id"]].append(str(row["message_id"]))
    return dict(order)


class AuditedWriters:
    """Concurrent writers, each on its own connection, committing business transactions of a
    few messages over one or two random aggregates, never locking an aggregate row themselves;
    the commit order goes to the audit table (see ``create_audit_tables``)."""

    def __init__(self, dsn: str, schema: str, subject: str) -> None:
        self.dsn, self.schema, self.subject = dsn, schema, subject
        self.outbox = PostgresOutbox(schema=schema)
        self.committed = 0
        self.transactions = 0

    async def run(
        self, total: int, aggregates: Sequence[str], writers: int = 8, seed: int = 5
    ) -> None:
        """``writers`` concurrent writers commit ``total`` messages, 1-6 per transaction."""
        conns = [await asyncpg.connect(self.dsn) for _ in range(writers)]

        async def write(index: int, rng: random.Random, count: int) -> None:
            chosen = rng.sample(aggregates, rng.randint(1, 2))
            messages = [self._message(rng.choice(chosen), n) for n in range(count)]
            await self._commit(conns[index], messages)

        try:
            await run_writers(total, writers, (1, 6), write, seed)
        finally:
            with anyio.CancelScope(shield=True):
                for conn in conns:
                    await conn.close()

    async def _commit(self, conn: asyncpg.Connection, messages: list[Message]) -> None:
        async with conn.transaction():
            await self.outbox.add_many(conn, messages)
            # The business change and the audit rows, after add_many: its advisory locks on
            # these aggregates are held until COMMIT. One statement, to keep round trips low.
            await conn.execute(
                f"WITH b AS (INSERT INTO {self.schema}.business (aggregate_id, n) "
                "SELECT a, n FROM unnest($1::text[]) WITH ORDINALITY AS x(a, n)) "
                f"INSERT INTO {self.schema}.audit (aggregate_id, message_id) "
                "SELECT a, m FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS x(a, m, n) "
                "ORDER BY n",
                [m.aggregate_id for m in messages],
                [m.id for m in messages],
            )
        self.committed += len(messages)
        self.transactions += 1

    def _message(self, aggregate_id: str, n: int) -> Message:
        return order_changed(aggregate_id, self.subject, aggregate=aggregate_id, n=n)
