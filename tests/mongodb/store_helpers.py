"""Stores for the mongodb tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from outboxkit_mongodb import MongoSettings, MongoStore

__all__ = ["opened"]


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
