"""Writes of many documents complete on every server, FerretDB's PostgreSQL backend included.

FerretDB 1.x on PostgreSQL holds a pool connection (50 by default, 100 in scripts/services)
per statement of an update command until the command ends: one command of more statements
never ends, and enough concurrent ones hang it too. The store sends it one statement per
command and runs at most 16 fenced writes at once (``outboxkit_mongodb.bulk``).
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest
from outboxkit_mongodb import MongoOutbox, MongoSettings, MongoStore
from outboxkit_mongodb.documents import Outboxes
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit import Message
from outboxkit.protocols import Envelope
from tests.support.mongodb import opened

pytestmark = pytest.mark.anyio

DOCUMENTS = 150
"""More than FerretDB's pool holds."""


async def test_a_batch_over_many_documents_is_acked_and_retried(
    mongo_settings: MongoSettings, mongo_db: AsyncDatabase[Any]
) -> None:
    async with opened(msgspec.structs.replace(mongo_settings, shard_count=1)) as store:
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


async def test_fenced_writes_stay_within_the_servers_limit(
    mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 shard workers acking at once: on FerretDB at most ``concurrent_writes`` run."""
    running, peak = 0, 0

    async def slow_remove(self: Outboxes, envelopes: Any, session: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.05)
        running -= 1

    monkeypatch.setattr(Outboxes, "remove", slow_remove)
    async with opened(msgspec.structs.replace(mongo_settings, shard_count=64)) as store:
        leases = [await store.acquire("r1", shard, 60) for shard in range(64)]
        message = Message.create(aggregate_type="o", aggregate_id="o1", event_type="E")
        envelope = Envelope(message=message, shard=0, position=1)
        async with anyio.create_task_group() as tg:
            for lease in leases:
                assert lease is not None
                tg.start_soon(store.ack, lease, [envelope])
    assert store.server is not None
    limit = store.server.concurrent_writes
    print(f"{store.server.name}: {peak} of 64 acks ran at once (limit {limit})")
    assert peak == (limit if limit is not None else 64)
