"""Writes of many documents complete on every server, FerretDB's PostgreSQL backend included.

FerretDB 1.x on PostgreSQL holds a pool connection (50 by default, 100 in scripts/services)
per statement of an update command until the command ends: one command of more statements
never ends. The store cuts its bulk writes into small commands there
(``outboxkit_mongodb.bulk``).
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest
from outboxkit_mongodb import MongoOutbox, MongoSettings, MongoStore
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit import Message

pytestmark = pytest.mark.anyio

DOCUMENTS = 150
"""More than FerretDB's pool holds."""


async def test_a_batch_over_many_documents_is_acked_and_retried(
    mongo_settings: MongoSettings, mongo_db: AsyncDatabase[Any]
) -> None:
    store = MongoStore(msgspec.structs.replace(mongo_settings, shard_count=1))
    await store.migrate(1)
    await store.open()
    try:
        outbox = MongoOutbox(shard_count=1)
        for i in range(DOCUMENTS):
            message = Message.create(aggregate_type="o", aggregate_id=f"o{i}", event_type="E")
            await outbox.update_one(
                mongo_db["orders"], {"_id": f"o{i}"}, {"$set": {"i": i}}, [message], upsert=True
            )
        lease = await store.acquire("r1", 0, 60)
        assert lease is not None
        with anyio.fail_after(60):
            claimed = await store.claim(lease, 500)
            assert len(claimed) == DOCUMENTS
            await store.retry(lease, claimed, "broker down", 0.0)
            claimed = await store.claim(lease, 500)
            assert {e.attempts for e in claimed} == {1}
            await store.ack(lease, claimed)
        assert (await store.status()).pending == 0
    finally:
        await store.close()


async def test_migrate_creates_many_shards(mongo_settings: MongoSettings) -> None:
    store = MongoStore(mongo_settings)
    with anyio.fail_after(60):
        await store.migrate(256)
    await store.open()
    try:
        assert store.shard_count == 256
        assert len(await store.leases()) == 256
    finally:
        await store.close()
