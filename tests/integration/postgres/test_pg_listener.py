"""LISTEN/NOTIFY wake-ups survive the loss of the LISTEN connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresStore

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
    store: PostgresStore,
    conn: asyncpg.Connection,
    schema: str,
    wait_woken_by_commit: Callable[[float], Awaitable[None]],
) -> None:
    await store.wait(0.01)  # opens the LISTEN connection
    assert store.wakes_every_commit
    assert await _terminate_listener(conn, f"outboxkit_{schema}_outbox") == 1

    # Once the drop is noticed, and until the next wait reconnects, workers must not count on
    # a NOTIFY after each commit.
    with anyio.fail_after(5):
        while store.wakes_every_commit:  # noqa: ASYNC110 (a property: no event to await)
            await anyio.sleep(0.01)
    with anyio.fail_after(5):
        woken = await store.wait(30)
    assert woken is None  # the drop wakes every shard: it may have missed a NOTIFY

    await wait_woken_by_commit(0.5)  # woken by NOTIFY again, on the new LISTEN connection
