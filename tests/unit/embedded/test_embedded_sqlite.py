"""The embedded SQLite store: the conformance suite plus its writer's atomicity."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from outboxkit.embedded.sqlite import db as sqlite_db
from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore, plugin
from outboxkit.embedded.sqlite.writer import SqliteOutbox
from outboxkit.errors import (
    ConfigurationError,
    InvalidMessageError,
    SchemaMissingError,
    TransactionRequiredError,
)
from outboxkit.message import Message
from outboxkit.plugins import STORE_GROUP
from outboxkit.sharding import shard_of
from outboxkit.testing import StoreConformance, WriteMessages, make_message

TABLE = "events_outbox"


@pytest.fixture
def settings(tmp_path: Path) -> SqliteSettings:
    return SqliteSettings(path=str(tmp_path / "outbox.db"), shard_count=4, table=TABLE)


@pytest.fixture
async def store(settings: SqliteSettings) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(settings)
    await store.migrate()
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def conn(settings: SqliteSettings) -> Iterator[sqlite3.Connection]:
    """A service's own connection, with Python's default (implicit BEGIN) transactions."""
    connection = sqlite3.connect(settings.path)
    connection.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, state TEXT)")
    connection.commit()
    yield connection
    connection.close()


@pytest.fixture
def write(conn: sqlite3.Connection) -> WriteMessages:
    outbox = SqliteOutbox(TABLE)

    async def write(messages: Sequence[Message]) -> None:
        with conn:
            outbox.add_many(conn, messages)

    return write


class TestSqliteStore(StoreConformance):
    """Every store guarantee, against the embedded SQLite store."""


async def _pending(store: SqliteStore) -> int:
    return (await store.status()).pending


@pytest.mark.anyio
async def test_rollback_writes_nothing(store: SqliteStore, conn: sqlite3.Connection) -> None:
    outbox = SqliteOutbox(TABLE)
    with pytest.raises(RuntimeError), conn:
        conn.execute("INSERT INTO orders VALUES ('o-1', 'paid')")
        outbox.add(conn, make_message("o-1"))
        raise RuntimeError("business rule failed")

    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)
    assert await _pending(store) == 0


@pytest.mark.anyio
async def test_commit_writes_business_row_and_messages(
    store: SqliteStore, conn: sqlite3.Connection
) -> None:
    outbox = SqliteOutbox(TABLE)
    with conn:
        conn.execute("INSERT INTO orders VALUES ('o-2', 'paid')")
        outbox.add(conn, make_message("o-2", 1))
        outbox.add_many(conn, [make_message("o-2", 2), make_message("o-3", 3)])

    assert await _pending(store) == 3


@pytest.mark.anyio
async def test_bad_message_in_batch_writes_nothing(
    store: SqliteStore, conn: sqlite3.Connection
) -> None:
    outbox = SqliteOutbox(TABLE, max_payload_bytes=100)
    oversized = Message(
        aggregate_type="order", aggregate_id="o-4", event_type="big", payload=b"x" * 101
    )
    with pytest.raises(InvalidMessageError, match="over the limit of 100"), conn:
        outbox.add_many(conn, [make_message("o-4"), oversized])
    text = "expected an outboxkit Message, got dict: build one with Message.create(...)"
    with pytest.raises(InvalidMessageError, match=f"^{re.escape(text)}$"), conn:
        outbox.add_many(conn, [make_message("o-4"), {"not": "a message"}])  # type: ignore[list-item]

    assert await _pending(store) == 0


@pytest.mark.anyio
async def test_autocommit_connection_is_refused(
    store: SqliteStore, settings: SqliteSettings
) -> None:
    autocommit = sqlite3.connect(settings.path, isolation_level=None)
    try:
        with pytest.raises(
            TransactionRequiredError, match=r"^SqliteOutbox\.add needs the caller.s"
        ):
            SqliteOutbox(TABLE).add(autocommit, make_message("o-5"))
    finally:
        autocommit.close()
    assert await _pending(store) == 0


@pytest.mark.anyio
async def test_missing_schema_is_a_clear_error(tmp_path: Path) -> None:
    settings = SqliteSettings(path=str(tmp_path / "empty.db"))
    store = SqliteStore(settings)
    with pytest.raises(SchemaMissingError, match="outboxkit migrate --store sqlite"):
        await store.open()
    await store.close()

    conn = sqlite3.connect(settings.path)
    with pytest.raises(SchemaMissingError, match="migrate"), conn:
        SqliteOutbox().add(conn, make_message("o-6"))
    conn.close()


@pytest.mark.anyio
async def test_migrate_is_idempotent_and_keeps_shard_count(
    store: SqliteStore, settings: SqliteSettings, write: WriteMessages
) -> None:
    await write([make_message("o-7")])
    again = SqliteStore(settings)
    await again.migrate(shard_count=16)
    await again.open()
    try:
        assert again.shard_count == 4
        assert (await again.status()).pending == 1
        assert len(await again.leases()) == 4
    finally:
        await again.close()


def test_bad_table_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not allowed"):
        SqliteStore(SqliteSettings(table="outbox; DROP TABLE orders"))
    with pytest.raises(ConfigurationError, match="not allowed"):
        SqliteOutbox("Outbox-1")


def test_plugin_is_registered() -> None:
    (entry_point,) = entry_points(group=STORE_GROUP, name="sqlite")
    assert entry_point.load() is plugin
    assert isinstance(plugin.create(SqliteSettings()), SqliteStore)


@pytest.mark.anyio
async def test_upgrade_from_version_1_keeps_dead_letters_blocking(
    settings: SqliteSettings,
    conn: sqlite3.Connection,
    write: WriteMessages,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dead letter written by schema version 1 has no position: after the upgrade it
    blocks every pending message of its aggregate, and a replay appends it."""
    old = SqliteStore(settings)
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_db, "MIGRATIONS", sqlite_db.MIGRATIONS[:1])
        patch.setattr(sqlite_db, "SCHEMA_VERSION", 1)
        await old.migrate()
        await old.close()
        first, later = make_message("o-8", 1), make_message("o-8", 2)
        await write([first, later])
    with conn:  # what a version-1 relay's dead_letter did with the first message
        columns = "id, aggregate_type, aggregate_id, event_type, topic, key, headers, payload"
        columns += ", content_type, created_at, shard"
        conn.execute(
            f"INSERT INTO {TABLE}_dead ({columns}, attempts, error, failed_at) "
            f"SELECT {columns}, 1, 'refused', 0 FROM {TABLE} WHERE id = ?",
            (str(first.id),),
        )
        conn.execute(f"DELETE FROM {TABLE} WHERE id = ?", (str(first.id),))

    store = SqliteStore(settings)
    with pytest.raises(SchemaMissingError, match=r"version 1.*outboxkit migrate"):
        await store.open()
    await store.migrate()
    await store.open()
    try:
        lease = await store.acquire("relay", shard_of("o-8", 4), 60.0)
        assert lease is not None
        assert await store.claim(lease, 10) == []
        assert (await store.status()).parked == 1
        assert await store.replay() == 1
        claimed = await store.claim(lease, 10)
        assert [e.message.id for e in claimed] == [later.id, first.id]
    finally:
        await store.close()
