"""The WAL-only writers take every connection object the table writers take (asyncpg,
SQLAlchemy, psycopg, Django), against the real PostgreSQL with the outbox's replication slot:
the writer conformance suite, one logical decoding message per batch, and the mode they share
with the relay's configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import ClassVar

import pytest
from outboxkit_postgres import (
    PostgresOutbox,
    PostgresWalOutbox,
    SyncPostgresOutbox,
    SyncPostgresWalOutbox,
    UnsupportedConnectionError,
)
from outboxkit_postgres.codec import decode_wal_messages
from outboxkit_postgres.pgoutput import Begin, Commit, LogicalMessage

from outboxkit.errors import ConfigurationError
from outboxkit.testing import WriterConformance, make_message
from tests.support.pg_writers import ASYNC_HARNESSES, SYNC_HARNESSES, PgHarness, on_wal, opened
from tests.support.postgres import slot_changes, wal_outbox

HARNESSES = {**ASYNC_HARNESSES, **SYNC_HARNESSES}


@pytest.fixture(params=sorted(HARNESSES))
async def wal_harness(
    request: pytest.FixtureRequest, postgres_url: str
) -> AsyncIterator[PgHarness]:
    """A driver's harness on the WAL-only writer of its kind, on a fresh WAL-only outbox."""
    async with wal_outbox(postgres_url) as schema:
        harness = await opened(on_wal(HARNESSES[request.param]), postgres_url, schema)
        try:
            yield harness
        finally:
            await harness.close()


class TestPostgresWalWriterConformance(WriterConformance):
    not_applicable: ClassVar[Mapping[str, str]] = {
        "test_concurrent_writers_of_one_aggregate_keep_commit_order": (
            "the harness takes the audit log's insert order for the commit order, true only "
            "of writers that serialise an aggregate; the WAL-only writer takes no lock, and "
            "the slot yields whole transactions in commit order (docs/log-tailing.md)"
        )
    }

    @pytest.fixture
    def writer_harness(self, wal_harness: PgHarness) -> PgHarness:
        return wal_harness


@pytest.mark.anyio
async def test_a_batch_is_one_message_in_the_slot_and_a_rollback_none(
    wal_harness: PgHarness,
) -> None:
    batch = [make_message("a", n, headers={"h": str(n)}) for n in range(3)]
    await wal_harness.write(batch)
    await wal_harness.write([make_message("b", 1)], outcome="rollback")
    assert wal_harness.slot is not None
    changes = await slot_changes(wal_harness.dsn, wal_harness.slot)

    prefix = f"outboxkit:{wal_harness.schema}.outbox"  # other tests emit messages too
    ours = [i for i, c in enumerate(changes) if getattr(c, "prefix", None) == prefix]
    assert len(ours) == 1, changes
    (at,) = ours
    emitted = changes[at]
    assert isinstance(emitted, LogicalMessage)
    assert isinstance(changes[at - 1], Begin) and isinstance(changes[at + 1], Commit)
    assert emitted.transactional
    assert decode_wal_messages(emitted.content) == batch


@pytest.mark.anyio
async def test_a_sync_connection_given_to_the_async_wal_writer_names_the_sync_one() -> None:
    from sqlalchemy.orm import Session

    with pytest.raises(UnsupportedConnectionError) as caught:
        await PostgresWalOutbox(read_config=False).add(Session(), make_message("a", 1))
    assert str(caught.value).startswith("PostgresWalOutbox takes an asyncpg Connection")
    assert "for sync code use SyncPostgresWalOutbox" in str(caught.value)


@pytest.mark.anyio
async def test_a_configured_mode_that_disagrees_with_the_writer_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outboxkit.toml").write_text('store = "pg"\n[pg]\nmode = "wal"\n')
    monkeypatch.chdir(tmp_path)
    for name in ("OUTBOXKIT_PG_MODE", "OUTBOXKIT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as table_writer:
        SyncPostgresOutbox().add(object(), make_message("a", 1))
    assert str(table_writer.value) == (
        "SyncPostgresOutbox writes to an outbox of mode table, but outboxkit.toml [pg] mode = "
        "'wal', which the relay reads too: use SyncPostgresWalOutbox (or set the mode to "
        "'table')"
    )
    from sqlalchemy.orm import Session

    SyncPostgresWalOutbox().add_many(Session(), [])  # agrees: nothing to write, no error

    monkeypatch.setenv("OUTBOXKIT_PG_MODE", "table")
    with pytest.raises(ConfigurationError, match=r"OUTBOXKIT_PG_MODE = 'table'.*use PostgresOutb"):
        await PostgresWalOutbox().add(object(), make_message("a", 1))
    monkeypatch.delenv("OUTBOXKIT_PG_MODE")
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(UnsupportedConnectionError):  # no mode configured: the writer's own
        await PostgresOutbox().add(object(), make_message("a", 1))
