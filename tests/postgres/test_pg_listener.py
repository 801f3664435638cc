"""LISTEN/NOTIFY wake-ups survive the loss of the LISTEN connection."""

from __future__ import annotations

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresStore

from outboxkit.testing import make_message

pytestmark = pytest.mark.anyio


async def _terminate_listener(conn: asyncpg.Connection, channel: str) -> int:
    """Kill the server backend of the store's LISTEN connection; return how many were killed."""
    killed: int = await conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE query = $1 AND pid <> pg_backend_pid()",
        f'LISTEN "{channel}"',
    )
    return killed


async def test_wait_reconnects_after_the_listen_connection_drops(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection, schema: str
) -> None:
    await store.wait(0.01)  # opens the LISTEN connection
    assert await _terminate_listener(conn, f"outboxkit_{schema}_outbox") == 1

    with anyio.fail_after(5):
        await store.wait(30)  # the drop itself wakes the relay (it may have missed a NOTIFY)

    async def commit_soon() -> None:
        await anyio.sleep(0.5)
        async with conn.transaction():
            await outbox.add(conn, make_message("a", 1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(commit_soon)
        with anyio.fail_after(5):  # far below the 30 s timeout: woken by NOTIFY again
            await store.wait(30)
