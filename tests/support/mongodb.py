"""MongoDB for the tests: throwaway databases and opened stores, cleaned up afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pymongo
from outboxkit_mongodb import MongoSettings, MongoStore
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit.testing import unique_name

__all__ = ["mongo_database", "opened"]


@asynccontextmanager
async def mongo_database(
    url: str, prefix: str = "okt"
) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A fresh database ``PREFIX_<12 hex digits>`` on the MongoDB-wire server at ``url``,
    dropped afterwards (even when the test is cancelled)."""
    client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    db = client[unique_name(prefix)]
    try:
        yield db
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await client.drop_database(db.name)
            finally:
                await client.close()


@asynccontextmanager
async def opened(settings: MongoSettings, *, migrate: bool = True) -> AsyncIterator[MongoStore]:
    """A store on ``settings``, migrated first unless ``migrate`` is False, open until exit."""
    s = MongoStore(settings)
    if migrate:
        await s.migrate()
    await s.open()
    try:
        yield s
    finally:
        await s.close()
