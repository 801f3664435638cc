"""Fixtures of the pg store tests: a fresh schema per test on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from outboxkit.message import Message
from outboxkit.testing import make_message
from tests.support.postgres import pg_connection, scratch_schema
from tests.unit.cli.conftest import run_cli, workdir  # noqa: F401 - the command, for pg tests

SHARDS = 4


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    async with scratch_schema(postgres_url, "t") as name:
        yield name


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
    async with pg_connection(postgres_url) as conn:
        yield conn


@pytest.fixture
def write(conn: asyncpg.Connection, outbox: PostgresOutbox):  # type: ignore[no-untyped-def]
    async def write(messages: Sequence[Message]) -> None:
        async with conn.transaction():
            await outbox.add_many(conn, messages)

    return write


@pytest.fixture
def wait_woken_by_commit(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection
) -> Callable[[float], Awaitable[None]]:
    """``await wait_woken_by_commit(commit_after)``: a message is committed ``commit_after``
    seconds from now, and ``store.wait(30)`` must return within 5 s, far below its timeout:
    woken by the commit's NOTIFY."""

    async def wait_woken(commit_after: float) -> None:
        async def commit_soon() -> None:
            await anyio.sleep(commit_after)
            async with conn.transaction():
                await outbox.add(conn, make_message("a", 1))

        async with anyio.create_task_group() as tg:
            tg.start_soon(commit_soon)
            with anyio.fail_after(5):
                await store.wait(30)

    return wait_woken
