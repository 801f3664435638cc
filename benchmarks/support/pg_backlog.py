"""A Postgres outbox in a throwaway schema, filled by the plugin's own writer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from benchmarks.support.progress import Progress
from benchmarks.support.throughput_floor import Sender, pg_floor
from outboxkit.message import Message
from outboxkit.protocols import Store

__all__ = ["PgBacklog", "pg_backlog"]

CHUNK = 1_000


class PgBacklog:
    """The outbox of ``settings.schema``; :meth:`fill` writes in commit order on one
    connection (so per-aggregate order is the list's order)."""

    def __init__(self, settings: PostgresSettings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.outbox = PostgresOutbox(
            schema=settings.schema, table=settings.table, notify=settings.notify
        )

    @property
    def table(self) -> str:
        """The outbox table, schema-qualified and quoted."""
        return f'"{self.settings.schema}"."{self.settings.table}"'

    def store(self) -> Store:
        return PostgresStore(self.settings)

    async def fill(self, messages: Sequence[Message], tracker: Progress) -> None:
        async with self.pool.acquire() as conn:
            for first in range(0, len(messages), CHUNK):
                chunk = messages[first : first + CHUNK]
                async with conn.transaction():
                    await self.outbox.add_many(conn, chunk)
                tracker.add(len(chunk))

    async def floor(self, sender: Sender, batch: int, count: int) -> float:
        shards = self.settings.shard_count
        return await pg_floor(self.settings.dsn, self.table, shards, sender, batch, count)


@asynccontextmanager
async def pg_backlog(
    url: str, schema: str, shard_count: int, *, notify: bool = True, pool_size: int = 8
) -> AsyncIterator[PgBacklog]:
    """Migrate ``schema``; drop it on exit."""
    settings = PostgresSettings(dsn=url, schema=schema, shard_count=shard_count, notify=notify)
    migrator = PostgresStore(settings)
    await migrator.migrate(shard_count)
    await migrator.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
    try:
        yield PgBacklog(settings, pool)
    finally:
        try:
            await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await pool.close()
