"""Fixtures of the pg store tests: a fresh schema per test on the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from outboxkit.message import Message

SHARDS = 4


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def settings(postgres_url: str, schema: str) -> PostgresSettings:
    return PostgresSettings(dsn=postgres_url, schema=schema, shard_count=SHARDS, pool_max=4)


@pytest.fixture
async def store(settings: PostgresSettings) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(settings)
    await store.migrate()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def outbox(schema: str) -> PostgresOutbox:
    return PostgresOutbox(schema=schema)


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def write(conn: asyncpg.Connection, outbox: PostgresOutbox):  # type: ignore[no-untyped-def]
    async def write(messages: Sequence[Message]) -> None:
        async with conn.transaction():
            await outbox.add_many(conn, messages)

    return write
