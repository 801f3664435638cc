"""The SQLite inbox (stdlib ``sqlite3``), for consumers whose state is in SQLite.

::

    inbox = SqliteInbox(guard="skip")
    inbox.migrate(conn)                      # once, at start-up (idempotent)
    with inbox.process(conn, message) as fresh:
        if fresh:
            conn.execute("UPDATE counters SET n = n + 1 WHERE id = ?", (key,))

:meth:`SqliteInbox.process` takes the write lock at once (``BEGIN IMMEDIATE``; a savepoint
inside a transaction you opened), records the id and yields the verdict; the block's change
commits with the id, an exception rolls both back. Writers queue on SQLite's lock, so two
consumers racing on one id are serialised: the second sees a duplicate.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated

import msgspec

from outboxkit.errors import ConfigurationError, SchemaMissingError
from outboxkit.inbox.contract import Guard, InboxPlugin, Verdict
from outboxkit.inbox.decoding import InboxMessage
from outboxkit.inbox.judging import AggregateKey, aggregate_keys, judge
from outboxkit.sql_names import check_identifier
from outboxkit.uuidv7 import uuid7_floor

__all__ = ["SqliteInbox", "SqliteInboxAdmin", "SqliteInboxSettings", "plugin"]

_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_GUARDS = ("off", "skip", "park")


class SqliteInbox:
    """Records processed message ids in the table ``table`` (see the module docs)."""

    def __init__(self, table: str = "inbox", *, guard: Guard = "off") -> None:
        if guard not in _GUARDS:
            raise ConfigurationError(f"guard must be one of {', '.join(_GUARDS)}, got {guard!r}")
        self.table = check_identifier(table, "SQLite inbox table name")
        """The inbox table (and the prefix of its ``_aggregates`` and ``_parked`` tables)."""
        self.guard: Guard = guard
        """The per-aggregate guard: off, skip or park."""

    def migrate(self, conn: sqlite3.Connection) -> None:
        """Create the inbox tables if missing."""
        t = self.table
        conn.executescript(
            f"CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, processed_at REAL NOT NULL);"
            f"CREATE TABLE IF NOT EXISTS {t}_aggregates (aggregate_type TEXT NOT NULL, "
            "aggregate_id TEXT NOT NULL, last_sequence INTEGER NOT NULL, "
            "PRIMARY KEY (aggregate_type, aggregate_id));"
            f"CREATE TABLE IF NOT EXISTS {t}_parked (id TEXT PRIMARY KEY, aggregate_type TEXT "
            "NOT NULL, aggregate_id TEXT NOT NULL, event_type TEXT NOT NULL, sequence INTEGER, "
            "topic TEXT, headers TEXT NOT NULL, payload BLOB NOT NULL, content_type TEXT NOT "
            "NULL, parked_at REAL NOT NULL);"
        )

    @contextmanager
    def process(self, conn: sqlite3.Connection, message: InboxMessage) -> Iterator[Verdict]:
        """A write transaction (or savepoint) recording ``message``; yields its verdict."""
        with _transaction(conn):
            yield self._record(conn, [message])[0]

    @contextmanager
    def process_batch(
        self, conn: sqlite3.Connection, messages: Sequence[InboxMessage]
    ) -> Iterator[list[InboxMessage]]:
        """One transaction for a batch: yields the fresh messages, in order."""
        with _transaction(conn):
            verdicts = self._record(conn, messages)
            yield [m for m, v in zip(messages, verdicts, strict=True) if v is Verdict.FRESH]

    def _record(self, conn: sqlite3.Connection, messages: Sequence[InboxMessage]) -> list[Verdict]:
        t = self.table
        new_ids = set()
        try:
            for m in messages:
                row = conn.execute(
                    f"INSERT INTO {t} (id, processed_at) VALUES (?, {_NOW}) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id",
                    (str(m.id),),
                ).fetchone()
                if row is not None:
                    new_ids.add(m.id)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise SchemaMissingError(
                    f"SQLite inbox table {t!r} does not exist: call SqliteInbox.migrate(conn) "
                    "or run `outboxkit inbox migrate --inbox sqlite`"
                ) from None
            raise
        last: dict[AggregateKey, int] = {}
        if self.guard != "off":
            for key in sorted(aggregate_keys(messages, new_ids)):
                row = conn.execute(
                    f"SELECT last_sequence FROM {t}_aggregates "
                    "WHERE aggregate_type = ? AND aggregate_id = ?",
                    key,
                ).fetchone()
                if row is not None:
                    last[key] = int(row[0])
        judgement = judge(messages, new_ids, last, self.guard)
        for (agg_type, agg_id), sequence in judgement.last.items():
            conn.execute(
                f"INSERT INTO {t}_aggregates (aggregate_type, aggregate_id, last_sequence) "
                "VALUES (?, ?, ?) ON CONFLICT (aggregate_type, aggregate_id) "
                "DO UPDATE SET last_sequence = excluded.last_sequence",
                (agg_type, agg_id, sequence),
            )
        for m in judgement.parked(messages):
            conn.execute(
                f"INSERT OR IGNORE INTO {t}_parked VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {_NOW})",
                (
                    str(m.id),
                    m.aggregate_type,
                    m.aggregate_id,
                    m.event_type,
                    m.sequence,
                    m.message.topic,
                    msgspec.json.encode(m.message.headers).decode(),
                    m.message.payload,
                    m.message.content_type,
                ),
            )
        return judgement.verdicts


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or a savepoint inside an open transaction."""
    nested = conn.in_transaction
    conn.execute("SAVEPOINT outboxkit_inbox" if nested else "BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if nested:
            conn.execute("ROLLBACK TO outboxkit_inbox")
            conn.execute("RELEASE outboxkit_inbox")
        else:
            conn.execute("ROLLBACK")
        raise
    conn.execute("RELEASE outboxkit_inbox" if nested else "COMMIT")


class SqliteInboxSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where a consumer's SQLite inbox lives (flags ``--sqlite-inbox-*``)."""

    path: Annotated[str, msgspec.Meta(description="SQLite database file")] = "outboxkit.db"
    table: Annotated[str, msgspec.Meta(description="name of the inbox table")] = "inbox"


class SqliteInboxAdmin:
    """``outboxkit inbox migrate|prune|status --inbox sqlite``."""

    def __init__(self, settings: SqliteInboxSettings) -> None:
        self.settings = settings
        """Where the inbox lives."""
        self.inbox = SqliteInbox(settings.table)
        """The inbox whose tables it manages."""
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Open the database file."""
        if self._conn is None:
            self._conn = sqlite3.connect(self.settings.path, isolation_level=None, timeout=10)

    async def close(self) -> None:
        """Close it. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigurationError("the inbox admin is not open: call open() first")
        return self._conn

    async def migrate(self) -> None:
        """Create the inbox tables if missing."""
        self.inbox.migrate(self._connection())

    async def prune(self, older_than: float, batch_size: int) -> int:
        """Delete ids of events written over ``older_than`` s ago (UUIDv7 text sorts by
        time: a range of the primary key), ``batch_size`` per statement."""
        conn, t = self._connection(), self.inbox.table
        bounds = (str(uuid7_floor(0)), str(uuid7_floor(time.time() - older_than)))
        removed = 0
        while True:
            try:
                cursor = conn.execute(
                    f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE id >= ? AND id < ? "
                    "ORDER BY id LIMIT ?)",
                    (*bounds, batch_size),
                )
            except sqlite3.OperationalError as exc:
                raise SchemaMissingError(f"SQLite inbox table {t!r}: {exc}") from None
            removed += cursor.rowcount
            if cursor.rowcount < batch_size:
                return removed

    async def counts(self) -> dict[str, int]:
        """Rows of the inbox, its aggregates and parked tables."""
        conn, t = self._connection(), self.inbox.table
        counts: dict[str, int] = {}
        for label, suffix in (
            ("processed", ""),
            ("aggregates", "_aggregates"),
            ("parked", "_parked"),
        ):
            try:
                counts[label] = int(conn.execute(f"SELECT count(*) FROM {t}{suffix}").fetchone()[0])
            except sqlite3.OperationalError as exc:
                raise SchemaMissingError(f"SQLite inbox table {t!r}: {exc}") from None
        return counts


plugin = InboxPlugin(
    name="sqlite",
    settings_type=SqliteInboxSettings,
    create=SqliteInboxAdmin,
    summary="SQLite inbox tables (stdlib sqlite3)",
)
"""The ``sqlite`` inbox plugin (entry point ``outboxkit.inboxes``)."""
