"""An ack writes each document once, from what the claim read, and survives racing appends.

The claim remembers each document's entries and ``<f>_seq``; the ack then needs no read: one
update per document selected by ``_id`` (plus the ``<f>_seq`` guard when it empties the
outbox). A guard that misses (a writer appended since the claim) falls back to ``$pullAll``
of the stored entries. A store that did not claim the batch (another relay process's store
object, or one that forgot) reads each document first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from outboxkit_mongodb import MongoOutbox, MongoSettings, MongoStore
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit import Message
from outboxkit.protocols import Envelope, Lease
from outboxkit.sharding import shard_of
from tests.support.mongodb import opened

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


def spy_on_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    """(collection, operation, filter) of every read (``find``, which ``find_one`` calls) and
    written statement from now on."""
    seen: list[tuple[str, str, Any]] = []
    for name in ("update_one", "update_many"):
        original: Op = getattr(AsyncCollection, name)

        def spy(original: Op = original, name: str = name) -> Op:
            async def call(self: AsyncCollection[Any], arg: Any, *a: Any, **k: Any) -> Any:
                seen.append((self.name, name, arg))
                return await original(self, arg, *a, **k)

            return call

        monkeypatch.setattr(AsyncCollection, name, spy())
    bulk: Op = AsyncCollection.bulk_write

    async def bulk_spy(self: AsyncCollection[Any], ops: Any, *a: Any, **k: Any) -> Any:
        seen.extend((self.name, "bulk_write", op._filter) for op in ops)
        return await bulk(self, ops, *a, **k)

    monkeypatch.setattr(AsyncCollection, "bulk_write", bulk_spy)
    find = AsyncCollection.find

    def find_spy(self: AsyncCollection[Any], arg: Any = None, *a: Any, **k: Any) -> Any:
        seen.append((self.name, "find", arg))
        return find(self, arg, *a, **k)

    monkeypatch.setattr(AsyncCollection, "find", find_spy)
    return seen


async def claim_three_documents(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> tuple[list[str], Lease, list[Envelope]]:
    docs = docs_of_one_shard(store.shard_count, 3)
    for doc in docs:
        await write(mongo_db, outbox, doc, "a", "b")
    lease = await store.acquire("r1", shard_of(docs[0], store.shard_count), 30)
    assert lease is not None
    claimed = await store.claim(lease, 10)
    assert len(claimed) == 6
    return docs, lease, claimed


async def assert_emptied(mongo_db: AsyncDatabase[Any], docs: list[str]) -> None:
    for doc in docs:
        stored = await mongo_db["orders"].find_one({"_id": doc})
        assert stored is not None and stored["outbox"] == [] and "outbox_pending" not in stored


async def test_ack_writes_each_document_once_without_reading_it(
    store: MongoStore,
    mongo_db: AsyncDatabase[Any],
    outbox: MongoOutbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs, lease, claimed = await claim_three_documents(store, mongo_db, outbox)
    seen = spy_on_writes(monkeypatch)
    await store.ack(lease, claimed)
    monkeypatch.undo()

    on_orders = [(op, arg) for coll, op, arg in seen if coll == "orders"]
    assert [op for op, _ in on_orders] == ["bulk_write"] * len(docs), on_orders
    assert sorted(arg["_id"] for _, arg in on_orders) == sorted(docs)
    await assert_emptied(mongo_db, docs)


async def test_ack_by_a_store_that_did_not_claim_reads_each_document(
    store: MongoStore,
    mongo_db: AsyncDatabase[Any],
    outbox: MongoOutbox,
    mongo_settings: MongoSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs, lease, claimed = await claim_three_documents(store, mongo_db, outbox)
    async with opened(mongo_settings, migrate=False) as other:
        seen = spy_on_writes(monkeypatch)
        await other.ack(lease, claimed)
        monkeypatch.undo()

    on_orders = [(op, arg) for coll, op, arg in seen if coll == "orders"]
    assert [op for op, _ in on_orders] == ["find", "update_one"] * len(docs), on_orders
    assert all(isinstance(arg.get("_id"), str) for _, arg in on_orders), on_orders
    await assert_emptied(mongo_db, docs)


async def claim_o1_with_a_and_b(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> tuple[Lease, list[Envelope]]:
    """Write events a and b to document o1; lease its shard and claim them."""
    await write(mongo_db, outbox, "o1", "a", "b")
    lease = await store.acquire("r1", shard_of("o1", store.shard_count), 30)
    assert lease is not None
    return lease, await store.claim(lease, 10)


async def assert_only_c_left(store: MongoStore, mongo_db: AsyncDatabase[Any], lease: Lease) -> None:
    """o1 still holds the appended c, pending, and the next claim returns it."""
    doc = await mongo_db["orders"].find_one({"_id": "o1"})
    assert doc is not None
    assert [e["event_type"] for e in doc["outbox"]] == ["c"]
    assert doc["outbox_pending"] is True
    assert [e.message.event_type for e in await store.claim(lease, 10)] == ["c"]


async def test_append_between_claim_and_ack_survives(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    lease, claimed = await claim_o1_with_a_and_b(store, mongo_db, outbox)
    await write(mongo_db, outbox, "o1", "c")  # a writer appends after the claim
    await store.ack(lease, claimed)
    await assert_only_c_left(store, mongo_db, lease)


async def test_append_between_the_acks_read_and_write_survives(
    store: MongoStore,
    mongo_db: AsyncDatabase[Any],
    outbox: MongoOutbox,
    mongo_settings: MongoSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lease, claimed = await claim_o1_with_a_and_b(store, mongo_db, outbox)
    original: Op = AsyncCollection.find_one

    async def read_then_append(self: AsyncCollection[Any], *a: Any, **k: Any) -> Any:
        found = await original(self, *a, **k)
        if self.name == "orders":
            await write(mongo_db, outbox, "o1", "c")  # a writer slips in before the ack writes
        return found

    # a store that did not claim: its ack reads the document
    async with opened(mongo_settings, migrate=False) as other:
        monkeypatch.setattr(AsyncCollection, "find_one", read_then_append)
        await other.ack(lease, claimed)
        monkeypatch.undo()
    await assert_only_c_left(store, mongo_db, lease)
