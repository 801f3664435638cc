"""The mongodb store passes the Store conformance suite against the real server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from outboxkit_mongodb import MongoOutbox, MongoStore
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit import Message
from outboxkit.testing.store_suite import StoreConformance, WriteMessages


class TestMongoStore(StoreConformance):
    """``store`` comes from tests/integration/mongodb/conftest.py (fresh database, 4 shards)."""

    @pytest.fixture
    def write(
        self, store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
    ) -> WriteMessages:
        """One single-document update per aggregate (the embedded outbox has no
        cross-document transaction), in first-appearance order."""

        async def write(messages: Sequence[Message]) -> None:
            by_aggregate: dict[str, list[Message]] = {}
            for message in messages:
                by_aggregate.setdefault(message.aggregate_id, []).append(message)
            for aggregate_id, batch in by_aggregate.items():
                await outbox.update_one(
                    mongo_db["orders"],
                    {"_id": aggregate_id},
                    {"$inc": {"version": 1}},
                    batch,
                    upsert=True,
                )

        return write
