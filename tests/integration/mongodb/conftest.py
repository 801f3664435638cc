"""Fixtures for the mongodb store tests: a unique database per test, dropped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from outboxkit_mongodb import MongoOutbox, MongoSettings, MongoStore
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.mongodb import mongo_database, opened

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
    async with opened(mongo_settings) as s:
        yield s


@pytest.fixture
async def migrated(mongo_settings: MongoSettings) -> MongoSettings:
    """The settings of a store migrated (and closed again) in the test's database."""
    async with opened(mongo_settings):
        return mongo_settings


@pytest.fixture
def outbox() -> MongoOutbox:
    """A writer that reads its shard count from the store's migration."""
    return MongoOutbox()
