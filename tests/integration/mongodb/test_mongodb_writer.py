"""The writer: business change and outbox entries in one single-document update; bad input
writes nothing."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
import pytest
from bson import ObjectId
from outboxkit_mongodb import InvalidWriteError, MongoOutbox, MongoSettings, MongoStore
from outboxkit_mongodb.entries import decode_entry
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DocumentTooLarge, OperationFailure, WriteError

from outboxkit import Message
from outboxkit.errors import ConfigurationError, InvalidMessageError, SchemaMissingError
from outboxkit.sharding import shard_of
from tests.support.mongodb import mongo_database

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("migrated")]


def msg(aggregate_id: str, event: str = "OrderPlaced", **payload: Any) -> Message:
    return Message.create(
        aggregate_type="order", aggregate_id=aggregate_id, event_type=event, payload=payload
    )


async def test_update_writes_business_change_and_outbox_together(
    mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    orders = mongo_db["orders"]
    await orders.insert_one({"_id": "o1", "status": "new"})
    first, second = msg("o1", "OrderPaid", n=1), msg("o1", "OrderShipped", n=2)

    result = await outbox.update_one(
        orders, {"_id": "o1"}, {"$set": {"status": "paid"}}, [first, second]
    )

    assert result.modified_count == 1
    doc = await orders.find_one({"_id": "o1"})
    assert doc is not None
    assert doc["status"] == "paid"
    stored = [decode_entry(e) for e in doc["outbox"]]
    # BSON dates have millisecond precision; every other field round-trips exactly.
    assert stored == [
        msgspec.structs.replace(m, created_at=s.created_at)
        for m, s in zip([first, second], stored, strict=True)
    ]
    assert all(
        abs(m.created_at - s.created_at).total_seconds() < 0.001
        for m, s in zip([first, second], stored, strict=True)
    )
    assert doc["outbox_pending"] is True
    assert doc["outbox_shard"] == shard_of("o1", outbox.shard_count)
    assert doc["outbox_seq"] == 2

    await outbox.update_one(orders, {"_id": "o1"}, {"$inc": {"version": 1}}, [msg("o1", "X")])
    doc = await orders.find_one({"_id": "o1"})
    assert doc is not None
    assert [e["event_type"] for e in doc["outbox"]] == ["OrderPaid", "OrderShipped", "X"]
    assert doc["outbox_seq"] == 3 and doc["version"] == 1


async def test_insert_and_upsert_and_find_one_and_update(
    mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    orders = mongo_db["orders"]
    oid = ObjectId()
    await outbox.insert_one(orders, {"_id": oid, "total": 5}, [msg(str(oid), "Created")])
    doc = await orders.find_one({"_id": oid})
    assert doc is not None and doc["total"] == 5
    assert [e["aggregate_id"] for e in doc["outbox"]] == [str(oid)]

    await outbox.update_one(
        orders, {"_id": "new"}, {"$set": {"total": 1}}, [msg("new", "Created")], upsert=True
    )
    doc = await orders.find_one({"_id": "new"})
    assert doc is not None and doc["total"] == 1 and len(doc["outbox"]) == 1

    after = await outbox.find_one_and_update(
        orders,
        {"_id": {"$eq": "new"}},
        {"$set": {"total": 2}},
        [msg("new", "Changed")],
        return_document=True,
    )
    assert after["total"] == 2
    assert [e["event_type"] for e in after["outbox"]] == ["Created", "Changed"]


async def test_no_matching_document_writes_nothing(
    mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    orders = mongo_db["orders"]
    await orders.insert_one({"_id": "o1", "version": 3})
    result = await outbox.update_one(
        orders, {"_id": "o1", "version": 2}, {"$set": {"x": 1}}, [msg("o1")]
    )
    assert result.matched_count == 0
    assert await orders.find_one({"_id": "o1"}) == {"_id": "o1", "version": 3}


BAD_CALLS: list[tuple[str, dict[str, Any], Any, type[Exception], str]] = [
    ("many-match filter", {"status": "new"}, {"$set": {"a": 1}}, InvalidWriteError, "equality"),
    ("range on _id", {"_id": {"$gt": "a"}}, {"$set": {"a": 1}}, InvalidWriteError, "equality"),
    ("replacement", {"_id": "o1"}, {"status": "x"}, InvalidWriteError, "replacement"),
    ("pipeline", {"_id": "o1"}, [{"$set": {"a": 1}}], InvalidWriteError, "pipeline"),
    ("touches outbox", {"_id": "o1"}, {"$set": {"outbox": []}}, InvalidWriteError, "maintains"),
    (
        "touches marker",
        {"_id": "o1"},
        {"$unset": {"outbox_pending": ""}},
        InvalidWriteError,
        "maintains",
    ),
    ("nested path", {"_id": "o1"}, {"$pop": {"outbox.0": 1}}, InvalidWriteError, "maintains"),
    (
        "rename into",
        {"_id": "o1"},
        {"$rename": {"a": "outbox_seq"}},
        InvalidWriteError,
        "maintains",
    ),
]


@pytest.mark.parametrize(
    ("filter", "update", "error", "text"),
    [c[1:] for c in BAD_CALLS],
    ids=[c[0] for c in BAD_CALLS],
)
async def test_bad_filter_or_update_is_refused_and_writes_nothing(
    mongo_db: AsyncDatabase[Any],
    outbox: MongoOutbox,
    filter: dict[str, Any],
    update: Any,
    error: type[Exception],
    text: str,
) -> None:
    orders = mongo_db["orders"]
    await orders.insert_many([{"_id": "o1", "status": "new"}, {"_id": "o2", "status": "new"}])
    with pytest.raises(error, match=text):
        await outbox.update_one(orders, filter, update, [msg("o1")])
    assert await orders.find({}).sort("_id", 1).to_list() == [
        {"_id": "o1", "status": "new"},
        {"_id": "o2", "status": "new"},
    ]


async def test_bad_messages_are_refused_and_write_nothing(
    mongo_db: AsyncDatabase[Any],
) -> None:
    outbox = MongoOutbox(max_payload_bytes=64)
    orders = mongo_db["orders"]
    await orders.insert_one({"_id": "o1", "status": "new"})
    cases: list[tuple[list[Any], str]] = [
        ([msg("o1"), msg("o2")], "document's '_id' is 'o1'"),
        ([msg("o1", blob="x" * 100)], "over the limit"),
        ([{"event_type": "dict"}], re.escape("expected an outboxkit Message, got dict: build")),
    ]
    same = msg("o1")
    cases.append(([same, same], "appears twice"))
    for messages, text in cases:
        with pytest.raises(InvalidMessageError, match=text):
            await outbox.update_one(orders, {"_id": "o1"}, {"$set": {"status": "x"}}, messages)
    with pytest.raises(InvalidMessageError, match="cannot be encoded"):
        Message.create(aggregate_type="o", aggregate_id="o1", event_type="E", payload={1j})
    assert await orders.find_one({"_id": "o1"}) == {"_id": "o1", "status": "new"}

    with pytest.raises(InvalidWriteError, match="outbox fields"):
        await outbox.insert_one(orders, {"_id": "o9", "outbox": []}, [msg("o9")])
    with pytest.raises(InvalidWriteError, match="has no '_id'"):
        await outbox.insert_one(orders, {"total": 1}, [msg("o9")])
    assert await orders.count_documents({}) == 1


async def test_server_refusal_writes_nothing(mongo_db: AsyncDatabase[Any]) -> None:
    """A document over the server's 16 MiB limit is refused whole: no business change either."""
    outbox = MongoOutbox(max_payload_bytes=20 * 1024 * 1024)
    orders = mongo_db["orders"]
    await orders.insert_one({"_id": "o1", "status": "new"})
    huge = Message(aggregate_type="o", aggregate_id="o1", event_type="E", payload=b"x" * 17_000_000)
    with pytest.raises((DocumentTooLarge, WriteError, OperationFailure)):
        await outbox.update_one(orders, {"_id": "o1"}, {"$set": {"status": "x"}}, [huge])
    assert await orders.find_one({"_id": "o1"}) == {"_id": "o1", "status": "new"}


async def test_custom_aggregate_field(mongo_db: AsyncDatabase[Any]) -> None:
    outbox = MongoOutbox(aggregate_field="order_no")
    orders = mongo_db["orders"]
    number = str(uuid.uuid4())
    await orders.insert_one({"order_no": number})
    await outbox.update_one(orders, {"order_no": number}, {"$set": {"s": 1}}, [msg(number)])
    with pytest.raises(InvalidWriteError, match="order_no"):
        await outbox.update_one(orders, {"_id": "x"}, {"$set": {"s": 1}}, [msg(number)])
    with pytest.raises(InvalidWriteError, match="maintains"):
        await outbox.update_one(orders, {"order_no": number}, {"$set": {"order_no": "y"}}, [])
    doc = await orders.find_one({"order_no": number})
    assert doc is not None and doc["s"] == 1 and len(doc["outbox"]) == 1


async def test_the_shard_count_comes_from_the_store(
    mongo_db: AsyncDatabase[Any], store: MongoStore, mongo_settings: MongoSettings
) -> None:
    """A writer made with another shard count than the migration's refuses to write; one
    made without reads it from the store, and its entries are claimed by the relay."""
    orders = mongo_db["orders"]
    await orders.insert_one({"_id": "o1", "status": "new"})
    wrong = MongoOutbox(shard_count=64)
    with pytest.raises(ConfigurationError, match=r"shard_count=64\) does not match the 4 shards"):
        await wrong.update_one(orders, {"_id": "o1"}, {"$set": {"status": "x"}}, [msg("o1")])
    assert await orders.find_one({"_id": "o1"}) == {"_id": "o1", "status": "new"}

    writer = MongoOutbox()
    with pytest.raises(ConfigurationError, match=r"await outbox\.load"):
        writer.prepare_update({"_id": "o1"}, {"$set": {"s": 1}}, [msg("o1")])
    sent = msg("o1")
    await writer.update_one(orders, {"_id": "o1"}, {"$set": {"status": "paid"}}, [sent])
    assert writer.shard_count == mongo_settings.shard_count == 4
    claimed = []
    for shard in range(store.shard_count):
        lease = await store.acquire("reader", shard, 60)
        assert lease is not None
        claimed += [e.message.id for e in await store.claim(lease, 100)]
    assert claimed == [sent.id]


async def test_a_database_without_the_store_is_refused(mongodb_url: str) -> None:
    async with mongo_database(mongodb_url) as db:
        await db["orders"].insert_one({"_id": "o1"})
        with pytest.raises(SchemaMissingError, match="run `outboxkit migrate --store mongodb`"):
            await MongoOutbox().update_one(
                db["orders"], {"_id": "o1"}, {"$set": {"s": 1}}, [msg("o1")]
            )
        assert await db["orders"].find_one({"_id": "o1"}) == {"_id": "o1"}
