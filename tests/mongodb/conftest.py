"""Fixtures for the mongodb store tests: a unique database per test, dropped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from outboxkit_mongodb import MongoOutbox, MongoSettings, MongoStore
from pymongo.asynchronous.database import AsyncDatabase
from server_clients import mongo_database

SHARDS = 4
COLLECTIONS = ["orders", "customers"]


@pytest.fixture
async def mongo_db(mongodb_url: str) -> AsyncIterator[AsyncDatabase[Any]]:
    """A fresh database (unique name), dropped after the test."""
    async with mongo_database(mongodb_url) as db:
        yield db


@pytest.fixture
def mongo_settings(mongodb_url: str, mongo_db: Any) -> MongoSettings:
    return MongoSettings(
        url=mongodb_url,
        database=mongo_db.name,
        collections=list(COLLECTIONS),
        shard_count=SHARDS,
        poll_interval=0.05,
    )


@pytest.fixture
async def store(mongo_settings: MongoSettings) -> AsyncIterator[MongoStore]:
    """A migrated and opened store."""
    s = MongoStore(mongo_settings)
    await s.migrate()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def outbox() -> MongoOutbox:
    return MongoOutbox(shard_count=SHARDS)
