"""Clients of the test servers for tests of several folders, each cleaning up after itself: a
PostgreSQL connection, a scratch MongoDB database, a Kafka consumer reading a topic from its
start.

Tests import it as ``server_clients``: pytest puts ``tests/`` (the folder of the top
``conftest.py``) on ``sys.path``, as it puts each test folder there for its own helpers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import pymongo
from aiokafka import AIOKafkaConsumer
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit.testing import unique_name

__all__ = ["consumer_from_start", "mongo_database", "pg_connection"]


@asynccontextmanager
async def pg_connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the PostgreSQL server at ``url``, closed afterwards."""
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


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


def consumer_from_start(bootstrap: str, topic: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer (not started yet) of every partition of ``topic`` from its first record, in
    no consumer group and committing no offsets; ``options`` go to ``AIOKafkaConsumer``."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **options,
    )
