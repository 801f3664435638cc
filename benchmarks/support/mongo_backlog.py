"""A MongoDB embedded-outbox backlog in a throwaway database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from outboxkit_mongodb import MongoOutbox, MongoSettings, MongoStore
from outboxkit_mongodb.bulk import bulk_write
from pymongo import AsyncMongoClient, UpdateOne

from benchmarks.support.progress import Progress
from benchmarks.support.throughput_floor import Sender, mongo_floor
from outboxkit.message import Message
from outboxkit.protocols import Store

__all__ = ["MongoBacklog", "mongo_backlog"]

COLLECTION = "bench_aggregates"
CHUNK = 500


class MongoBacklog:
    """Aggregate documents whose outbox arrays hold the messages to relay."""

    def __init__(
        self,
        settings: MongoSettings,
        client: AsyncMongoClient[dict[str, Any]],
        per_command: int | None,
    ) -> None:
        self.settings = settings
        self._client = client
        self._per_command = per_command
        self._writer = MongoOutbox(collection_prefix=settings.collection_prefix)

    def store(self) -> Store:
        return MongoStore(self.settings)

    async def fill(self, messages: Sequence[Message], tracker: Progress) -> None:
        """One upsert per aggregate with all its messages (the writer's ``$push``)."""
        by_aggregate: dict[str, list[Message]] = {}
        for message in messages:
            by_aggregate.setdefault(message.aggregate_id, []).append(message)
        collection = self._client[self.settings.database][COLLECTION]
        await self._writer.load(collection.database)  # the store's shard count
        groups = list(by_aggregate.values())
        for first in range(0, len(groups), CHUNK):
            chunk = groups[first : first + CHUNK]
            ops = [self._upsert(own) for own in chunk]
            await bulk_write(collection, ops, per_command=self._per_command)
            tracker.add(sum(len(own) for own in chunk))
        await self._check_stored(len(messages))

    async def floor(self, sender: Sender, batch: int, count: int) -> float:
        return await mongo_floor(
            self.settings, COLLECTION, sender, batch, count, per_command=self._per_command
        )

    async def _check_stored(self, expected: int) -> None:
        """Fail unless the database holds exactly ``expected`` pending entries.

        Each document gets one write (no two writes race on it, which FerretDB could lose),
        so a shortfall here is a server problem, not something the relay should be blamed
        for later.
        """
        f = self._writer.fields
        collection = self._client[self.settings.database][COLLECTION]
        stored = 0
        async for doc in collection.find({f.pending: True}, {f"{f.array}.id": 1}):
            stored += len(doc.get(f.array) or [])
        if stored != expected:
            raise RuntimeError(f"backlog holds {stored} pending entries, {expected} were written")

    def _upsert(self, own: Sequence[Message]) -> UpdateOne:
        key = {"_id": own[0].aggregate_id}
        return UpdateOne(
            key, self._writer.prepare_update(key, {"$set": {"v": 1}}, own), upsert=True
        )


@asynccontextmanager
async def mongo_backlog(url: str, database: str, shard_count: int) -> AsyncIterator[MongoBacklog]:
    """Migrate a fresh database; drop it on exit."""
    settings = MongoSettings(
        url=url, database=database, collections=[COLLECTION], shard_count=shard_count
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    try:
        migrator = MongoStore(settings)
        await migrator.migrate(shard_count)
        await migrator.close()
        assert migrator.server is not None
        yield MongoBacklog(settings, client, migrator.server.statements_per_command)
    finally:
        await client.drop_database(database)
        await client.close()
