"""Writers of the MongoDB end-to-end tests, which record each document's commit order, and a
probe for servers that lose concurrent updates of one document (the writers then serialise
the writes of one document).

The relay processes are ``relays.mongo_relays``; the scratch database is
``tests.support.mongodb.mongo_database``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from typing import Any

import anyio
from outboxkit_mongodb import MongoOutbox
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from tests.e2e.checks import committed_ids
from tests.e2e.writers import order_changed, run_writers

__all__ = ["MongoWriters", "loses_concurrent_updates", "order_writers"]

Db = AsyncDatabase[dict[str, Any]]


async def loses_concurrent_updates(db: Db, tasks: int = 4, updates: int = 50) -> bool:
    """Whether the server drops acknowledged concurrent updates of one document.

    FerretDB 1.x (SQLite and PostgreSQL backends alike) applies an update as read, modify in
    the proxy, write back by ``_id`` with no version check: concurrent updates of one
    document overwrite each other although every one reports success.
    """
    coll = db["okt_lost_update_probe"]
    await coll.insert_one({"_id": 1, "n": 0})

    async def bump() -> None:
        for _ in range(updates):
            await coll.update_one({"_id": 1}, {"$inc": {"n": 1}})

    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(bump)
    doc = await coll.find_one({"_id": 1})
    await coll.drop()
    assert doc is not None
    return int(doc["n"]) != tasks * updates


class MongoWriters:
    """Concurrent writers on shared aggregate documents, through ``MongoOutbox``.

    Each write is one single-document update: the business change (``$inc: {writes: 1}``)
    plus a few outbox messages. The value of ``writes`` after the update is the write's place
    in the document's commit order, so the expected order needs no lock. With
    ``serialize_per_document`` the writes of one document are serialised in this process
    (writes of different documents stay concurrent): for servers that lose concurrent
    updates of one document.
    """

    def __init__(
        self,
        db: Db,
        outbox: MongoOutbox,
        collection: str,
        topic: str,
        documents: Sequence[str],
        *,
        serialize_per_document: bool,
    ) -> None:
        self.coll = db[collection]
        self.outbox, self.topic = outbox, topic
        self.documents = list(documents)
        self.serialize = serialize_per_document
        self._locks = {d: anyio.Lock() for d in self.documents}
        # document -> its ``writes`` counter value -> the messages of that write
        self._writes: dict[str, dict[int, list[str]]] = {d: {} for d in self.documents}
        self.count = 0

    async def create_documents(self) -> None:
        await self.coll.insert_many([{"_id": d, "writes": 0} for d in self.documents])

    async def run(
        self, total: int, writers: int, per_write: tuple[int, int] = (1, 3), seed: int = 7
    ) -> None:
        """``writers`` concurrent tasks write ``total`` messages on random documents,
        ``per_write`` (min, max) messages per write."""

        async def write(_: int, rng: random.Random, count: int) -> None:
            await self.write(rng.choice(self.documents), count)

        await run_writers(total, writers, per_write, write, seed)

    async def write(self, doc: str, count: int) -> None:
        messages = [order_changed(doc, self.topic, n=n) for n in range(count)]
        lock = self._locks[doc] if self.serialize else contextlib.nullcontext()
        async with lock:
            after = await self.outbox.find_one_and_update(
                self.coll,
                {"_id": doc},
                {"$inc": {"writes": 1}},
                messages,
                return_document=ReturnDocument.AFTER,
            )
        assert after is not None, f"document {doc} vanished"
        self._writes[doc][int(after["writes"])] = [str(m.id) for m in messages]
        self.count += count

    @property
    def committed(self) -> dict[str, list[str]]:
        """Message ids per aggregate, in commit order."""
        return {
            doc: [m for k in sorted(writes) for m in writes[k]]
            for doc, writes in self._writes.items()
        }

    @property
    def ids(self) -> set[str]:
        return committed_ids(self.committed)


async def order_writers(
    db: Db, shard_count: int, destination: str, documents: int, *, serialize: bool
) -> MongoWriters:
    """Writers over ``documents`` documents of the ``orders`` collection (created here),
    ``order-00``, ``order-01``, ...; ``serialize``: one write at a time per document."""
    writers = MongoWriters(
        db,
        MongoOutbox(shard_count=shard_count),
        "orders",
        destination,
        [f"order-{i:02d}" for i in range(documents)],
        serialize_per_document=serialize,
    )
    await writers.create_documents()
    return writers
