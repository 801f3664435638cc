"""Acks select documents by ``_id`` only, one document at a time, and survive a racing append.

FerretDB 1.x (SQLite) pushes down only ``_id`` equality: any other filter (``$in``,
``$size``, markers) scans and decodes the whole collection. An ack that did so (twice) took
seconds per batch, starved the lease upkeep and stalled the relay (benchmark: 3.3 msg/s).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from outboxkit_mongodb import MongoOutbox, MongoStore
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit import Message
from outboxkit.protocols import Lease
from outboxkit.sharding import shard_of

pytestmark = pytest.mark.anyio

Op = Callable[..., Awaitable[Any]]


def msg(aggregate_id: str, event: str) -> Message:
    return Message.create(
        aggregate_type="order", aggregate_id=aggregate_id, event_type=event, payload={}
    )


async def write(db: AsyncDatabase[Any], outbox: MongoOutbox, doc: str, *events: str) -> None:
    await outbox.update_one(
        db["orders"], {"_id": doc}, {"$inc": {"n": 1}}, [msg(doc, e) for e in events], upsert=True
    )


def docs_of_one_shard(shard_count: int, count: int) -> list[str]:
    names = (f"o{i}" for i in range(10_000))
    first = next(names)
    same = [first] + [n for n in names if shard_of(n, shard_count) == shard_of(first, shard_count)]
    return same[:count]


async def test_ack_touches_documents_by_id_only(
    store: MongoStore,
    mongo_db: AsyncDatabase[Any],
    outbox: MongoOutbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = docs_of_one_shard(store.shard_count, 3)
    for doc in docs:
        await write(mongo_db, outbox, doc, "a", "b")
    lease = await store.acquire("r1", shard_of(docs[0], store.shard_count), 30)
    assert lease is not None
    claimed = await store.claim(lease, 10)
    assert len(claimed) == 6

    seen: list[tuple[str, str, Any]] = []
    for name in ("find_one", "update_one", "update_many", "bulk_write"):
        original: Op = getattr(AsyncCollection, name)

        def spy(original: Op = original, name: str = name) -> Op:
            async def call(self: AsyncCollection[Any], arg: Any, *a: Any, **k: Any) -> Any:
                seen.append((self.name, name, arg))
                return await original(self, arg, *a, **k)

            return call

        monkeypatch.setattr(AsyncCollection, name, spy())
    find = AsyncCollection.find

    def find_spy(self: AsyncCollection[Any], arg: Any = None, *a: Any, **k: Any) -> Any:
        seen.append((self.name, "find", arg))
        return find(self, arg, *a, **k)

    monkeypatch.setattr(AsyncCollection, "find", find_spy)
    await store.ack(lease, claimed)
    monkeypatch.undo()

    on_orders = [(op, arg) for coll, op, arg in seen if coll == "orders"]
    assert {op for op, _ in on_orders} <= {"find", "find_one", "update_one"}, on_orders
    assert all(isinstance(arg.get("_id"), str) for _, arg in on_orders), on_orders
    assert sum(op == "update_one" for op, _ in on_orders) == len(docs)  # one write each
    for doc in docs:
        stored = await mongo_db["orders"].find_one({"_id": doc})
        assert stored is not None and stored["outbox"] == [] and "outbox_pending" not in stored


async def test_append_between_the_acks_read_and_write_survives(
    store: MongoStore,
    mongo_db: AsyncDatabase[Any],
    outbox: MongoOutbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await write(mongo_db, outbox, "o1", "a", "b")
    lease: Lease | None = await store.acquire("r1", shard_of("o1", store.shard_count), 30)
    assert lease is not None
    claimed = await store.claim(lease, 10)
    original: Op = AsyncCollection.find_one

    async def read_then_append(self: AsyncCollection[Any], *a: Any, **k: Any) -> Any:
        found = await original(self, *a, **k)
        if self.name == "orders":
            await write(mongo_db, outbox, "o1", "c")  # a writer slips in before the ack writes
        return found

    monkeypatch.setattr(AsyncCollection, "find_one", read_then_append)
    await store.ack(lease, claimed)
    monkeypatch.undo()

    doc = await mongo_db["orders"].find_one({"_id": "o1"})
    assert doc is not None
    assert [e["event_type"] for e in doc["outbox"]] == ["c"]
    assert doc["outbox_pending"] is True
    assert [e.message.event_type for e in await store.claim(lease, 10)] == ["c"]
