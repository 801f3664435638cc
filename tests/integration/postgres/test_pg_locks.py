"""The pg writer's and migrate's advisory locks live in outboxkit's own two-key class: an
application's advisory locks on the same numbers do not block them, and writers of one
aggregate still serialise."""

from __future__ import annotations

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore
from outboxkit_postgres.names import WRITER_LOCK_CLASS

from outboxkit.sharding import aggregate_hash
from outboxkit.testing import make_message
from tests.support.postgres import pg_connection

pytestmark = pytest.mark.anyio

OLD_MIGRATION_LOCK = 0x6F7574626F78  # the one-key lock `migrate` took before schema version 2


async def test_application_advisory_lock_on_the_aggregate_hash_does_not_block_writes(
    store: PostgresStore, outbox: PostgresOutbox, conn: asyncpg.Connection, postgres_url: str
) -> None:
    key = aggregate_hash("order-7")
    async with pg_connection(postgres_url) as app:
        await app.execute("SELECT pg_advisory_lock($1)", key)  # the application's own lock
        await conn.execute("SET lock_timeout = '3s'")
        async with conn.transaction():
            await outbox.add(conn, make_message("order-7", 1))
        async with conn.transaction():
            await outbox.add_many(conn, [make_message("order-7", 2), make_message("order-7", 3)])
    assert (await store.status()).pending == 3


@pytest.mark.parametrize("count", [1, 2])
async def test_writers_of_one_aggregate_lock_outboxkits_class_key(
    store: PostgresStore,
    outbox: PostgresOutbox,
    conn: asyncpg.Connection,
    postgres_url: str,
    count: int,
) -> None:
    """The lock a writer waits for is (WRITER_LOCK_CLASS, high 32 bits of the hash)."""
    key = aggregate_hash("order-7") >> 32
    async with conn.transaction():
        await outbox.add(conn, make_message("order-7", 0))
        async with pg_connection(postgres_url) as other:
            await other.execute("SET lock_timeout = '500ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                async with other.transaction():
                    messages = [make_message("order-7", i) for i in range(1, count + 1)]
                    await outbox.add_many(other, messages)
            held = await other.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
                "AND classid::bigint = $1 AND objid::bigint = ($2::bigint & 4294967295)",
                WRITER_LOCK_CLASS,
                key,
            )
            assert held == 1


async def test_application_advisory_lock_on_the_old_migration_key_does_not_block_migrate(
    settings: PostgresSettings, postgres_url: str
) -> None:
    async with pg_connection(postgres_url) as app:
        await app.execute("SELECT pg_advisory_lock($1)", OLD_MIGRATION_LOCK)
        store = PostgresStore(settings)
        try:
            with anyio.fail_after(10):
                await store.migrate()
        finally:
            await store.close()
    assert store.shard_count == settings.shard_count
