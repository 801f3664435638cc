"""pg store specifics: configuration errors, masking, schema checks, the claim plan."""

from __future__ import annotations

import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from outboxkit.errors import ConfigurationError, SchemaMissingError, StoreUnavailableError
from outboxkit.testing import make_message

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("table", ["outbox; drop table x", "Outbox", "1abc", "a" * 60, ""])
def test_bad_identifiers_are_refused(table: str) -> None:
    with pytest.raises(ConfigurationError, match="not allowed"):
        PostgresStore(PostgresSettings(table=table))
    with pytest.raises(ConfigurationError):
        PostgresOutbox(schema=table or "x y")


async def test_unreachable_server_error_masks_the_password() -> None:
    store = PostgresStore(
        PostgresSettings(dsn="postgresql://app:s3cret@127.0.0.1:1/db", connect_timeout=2)
    )
    with pytest.raises(StoreUnavailableError) as info:
        await store.open()
    assert "s3cret" not in str(info.value)
    assert "app:***@127.0.0.1:1" in str(info.value)


async def test_missing_schema_names_the_fix(postgres_url: str) -> None:
    store = PostgresStore(PostgresSettings(dsn=postgres_url, schema="no_such_schema_here"))
    with pytest.raises(SchemaMissingError, match="outboxkit migrate --store pg"):
        await store.open()


async def test_migrate_is_rerunnable_and_keeps_the_shard_count(
    settings: PostgresSettings,
) -> None:
    store = PostgresStore(settings)
    await store.migrate(4)
    await store.migrate(16)
    await store.open()
    try:
        assert store.shard_count == 4
        assert len(await store.leases()) == 4
    finally:
        await store.close()


async def test_claim_uses_the_primary_key_with_a_large_backlog(
    store: PostgresStore, conn: asyncpg.Connection, schema: str
) -> None:
    async with conn.transaction():
        await PostgresOutbox(schema=schema, notify=False).add_many(
            conn, [make_message(f"agg-{i % 997}", i) for i in range(20_000)]
        )
    await conn.execute(f"ANALYZE {schema}.outbox")
    claim_sql = store._q["claim"]  # the exact query the relay runs
    plan = "\n".join(
        row[0]
        for row in await conn.fetch("EXPLAIN " + claim_sql.replace("$1", "0").replace("$2", "500"))
    )
    assert "outbox_pkey" in plan, plan
    assert "Seq Scan on outbox o" not in plan, plan
