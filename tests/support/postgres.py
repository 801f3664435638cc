"""PostgreSQL for the tests: connections and throwaway schemas, each cleaned up afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
from outboxkit_postgres import PostgresSettings, PostgresStore
from outboxkit_postgres.pgoutput import decode
from outboxkit_postgres.wal_store import PostgresWalStore, create_store

from outboxkit.testing import unique_name

__all__ = [
    "execute",
    "outbox_schema",
    "pg_connection",
    "scratch_schema",
    "slot_changes",
    "wal_outbox",
]


@asynccontextmanager
async def pg_connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the PostgreSQL server at ``url``, closed afterwards."""
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def execute(dsn: str, *statements: str) -> None:
    """Run ``statements`` one after the other on a connection of their own."""
    async with pg_connection(dsn) as conn:
        for statement in statements:
            await conn.execute(statement)


async def slot_changes(dsn: str, slot: str) -> list[object]:
    """What the slot (and its publication, of the same name) holds now, decoded; peeked, so
    the slot does not move."""
    async with pg_connection(dsn) as conn:
        rows = await conn.fetch(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1::name, NULL, NULL, "
            "'proto_version', '1', 'publication_names', $1::text, 'messages', 'true')",
            slot,
        )
    return [decode(bytes(row["data"])) for row in rows]


@asynccontextmanager
async def scratch_schema(dsn: str, prefix: str = "okt") -> AsyncIterator[str]:
    """A fresh schema name ``PREFIX_<12 hex digits>`` (not created here), dropped with all it
    holds afterwards (even when the test is cancelled)."""
    schema = unique_name(prefix)
    try:
        yield schema
    finally:
        with anyio.CancelScope(shield=True):
            await execute(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@asynccontextmanager
async def outbox_schema(dsn: str, shards: int, prefix: str = "okt_e2e") -> AsyncIterator[str]:
    """A fresh schema ``PREFIX_<12 hex digits>`` holding an outbox of ``shards`` shards,
    migrated as ``outboxkit migrate --store pg`` does; dropped with all it holds afterwards."""
    async with scratch_schema(dsn, prefix) as schema:
        store = PostgresStore(PostgresSettings(dsn=dsn, schema=schema, shard_count=shards))
        await store.migrate()
        await store.close()
        yield schema


@asynccontextmanager
async def wal_outbox(dsn: str, shards: int = 4, **settings: object) -> AsyncIterator[str]:
    """A fresh schema holding an outbox that tails the log (default ``mode="wal"``; or
    ``mode="table", wake_from_log=True``): its tables, publication and replication slot, as
    ``outboxkit migrate --store pg`` creates them. The slot and publication are dropped
    afterwards (a forgotten slot keeps WAL forever; the shared server has few slots), then the
    schema."""
    async with scratch_schema(dsn, "okt_wal") as schema:
        options: dict[str, Any] = {"mode": "wal", **settings}
        store = create_store(
            PostgresSettings(dsn=dsn, schema=schema, shard_count=shards, **options)
        )
        assert isinstance(store, PostgresWalStore)
        try:
            await store.migrate()
            yield schema
        finally:
            with anyio.CancelScope(shield=True):
                await store.drop_slot()
                await store.close()
