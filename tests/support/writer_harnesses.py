"""Writer harnesses of the embedded SQLite writer and the MongoDB writer, for the parts of
:class:`~outboxkit.testing.WriterConformance` that apply to them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio

from outboxkit.embedded.sqlite.writer import SqliteOutbox
from outboxkit.message import Message
from outboxkit.protocols import Store
from outboxkit.testing import BusinessFailure, Outcome

__all__ = ["MongoHarness", "SqliteHarness", "claimed_messages"]


async def claimed_messages(store: Store) -> list[Message]:
    """Every pending message of ``store``, shard by shard in claim order (leases kept)."""
    out: list[Message] = []
    for shard in range(store.shard_count):
        lease = await store.acquire("writer-suite-reader", shard, 60)
        assert lease is not None
        out += [e.message for e in await store.claim(lease, 100_000)]
    return out


class SqliteHarness:
    """``with conn:`` on a sqlite3 connection (commit on success, rollback on error); the
    audit log is a table of the same database."""

    def __init__(self, store: Store, path: Path) -> None:
        self.store = store
        self.path = path
        self.outbox = SqliteOutbox()
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS audit (n INTEGER PRIMARY KEY, id TEXT)")
        conn.close()

    def _write(self, messages: Sequence[Message], outcome: Outcome) -> None:
        conn = sqlite3.connect(self.path)
        error: Exception | None = None
        try:
            with conn:
                try:
                    self.outbox.add_many(conn, messages)
                except Exception as exc:
                    error = exc
                else:
                    conn.executemany(
                        "INSERT INTO audit (id) VALUES (?)", [(str(m.id),) for m in messages]
                    )
                    if outcome == "raise":
                        raise BusinessFailure
                    if outcome == "rollback":
                        conn.rollback()
        finally:
            conn.close()
        if error is not None:
            raise error

    async def write(
        self, messages: Sequence[Message], outcome: Outcome = "commit", pause: float = 0.0
    ) -> None:
        await anyio.to_thread.run_sync(self._write, messages, outcome)

    async def write_outside(self, messages: Sequence[Message]) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)  # autocommit
        try:
            self.outbox.add_many(conn, messages)
        finally:
            conn.close()

    async def written(self) -> list[Message]:
        return await claimed_messages(self.store)

    async def commit_order(self) -> list[UUID]:
        with sqlite3.connect(self.path) as conn:
            rows = conn.execute("SELECT id FROM audit ORDER BY n").fetchall()
        conn.close()
        return [UUID(row[0]) for row in rows]


class MongoHarness:
    """One ``update_one`` of the aggregate's document per write (upsert): the business
    change and the outbox entries in one single-document update, no transaction."""

    def __init__(self, store: Store, collection: Any) -> None:
        from outboxkit_mongodb import MongoOutbox

        self.store = store
        self.collection = collection
        self.outbox = MongoOutbox()

    async def write(
        self, messages: Sequence[Message], outcome: Outcome = "commit", pause: float = 0.0
    ) -> None:
        assert outcome == "commit", "the MongoDB writer has no transaction to end otherwise"
        first = messages[0]
        aggregate_id = first.aggregate_id if isinstance(first, Message) else "?"
        await self.outbox.update_one(
            self.collection, {"_id": aggregate_id}, {"$inc": {"version": 1}}, messages, upsert=True
        )

    async def write_outside(self, messages: Sequence[Message]) -> None:
        raise AssertionError("not applicable: the MongoDB writer needs no transaction")

    async def written(self) -> list[Message]:
        return await claimed_messages(self.store)

    async def commit_order(self) -> list[UUID]:
        raise AssertionError("not applicable: see TestMongoWriterConformance")
