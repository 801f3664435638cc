"""SQLite plumbing of the embedded store: table names, connections, transactions, schema."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files

from outboxkit.embedded.sqlite.codec import MESSAGE_COLUMN_DEFS
from outboxkit.errors import ConfigurationError, SchemaMissingError
from outboxkit.sql_names import check_identifier, quote_identifier

__all__ = [
    "NOW",
    "SCHEMA_VERSION",
    "Tables",
    "connect",
    "immediate",
    "migrate_schema",
    "read_shard_count",
]

NOW = "((julianday('now') - 2440587.5) * 86400.0)"
"""SQL expression: the database clock in seconds since the epoch (stable within a statement)."""

BUSY_TIMEOUT_MS = 10_000
MIGRATIONS = ("schema.sql", "schema_2.sql")
"""Schema scripts; script ``i`` upgrades version ``i`` to ``i + 1``."""
SCHEMA_VERSION = len(MIGRATIONS)

_TABLE_TOKEN = re.compile(r"\{table\}(\w*)")
"""``{table}`` of a schema script and a suffix glued to it (``{table}_dead``): one quoted name."""


@dataclass(frozen=True)
class Tables:
    """The outbox table and its helper tables, from a validated base name.

    ``name`` is the name as configured, for messages; the other attributes are the tables'
    quoted names, for SQL, so reserved words (``order``) work as table names.
    """

    name: str

    def __post_init__(self) -> None:
        check_identifier(self.name, "SQLite outbox table name")

    def _quoted(self, suffix: str = "") -> str:
        return quote_identifier(self.name + suffix)

    @property
    def outbox(self) -> str:
        return self._quoted()

    @property
    def dead(self) -> str:
        return self._quoted("_dead")

    @property
    def leases(self) -> str:
        return self._quoted("_leases")

    @property
    def instances(self) -> str:
        return self._quoted("_instances")

    @property
    def meta(self) -> str:
        return self._quoted("_meta")


def connect(path: str) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) in WAL mode with a busy timeout."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken at once (``BEGIN IMMEDIATE``), rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _meta_value(conn: sqlite3.Connection, tables: Tables, key: str) -> str | None:
    try:
        row = conn.execute(f"SELECT value FROM {tables.meta} WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return None
    return None if row is None else str(row[0])


def read_shard_count(conn: sqlite3.Connection, tables: Tables) -> int:
    """The shard count fixed at migration; raise :class:`SchemaMissingError` if not migrated."""
    version = _meta_value(conn, tables, "schema_version")
    count = _meta_value(conn, tables, "shard_count")
    if version is None or count is None:
        raise SchemaMissingError(
            f"the SQLite outbox table {tables.name!r} does not exist: "
            "run `outboxkit migrate --store sqlite`"
        )
    if int(version) != SCHEMA_VERSION:
        raise SchemaMissingError(
            f"the SQLite outbox {tables.name!r} has schema version {version}, this outboxkit "
            f"needs {SCHEMA_VERSION}: run `outboxkit migrate --store sqlite`"
        )
    return int(count)


def _script(name: str, tables: Tables) -> list[str]:
    text = files("outboxkit.embedded.sqlite").joinpath(name).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    body = _TABLE_TOKEN.sub(lambda m: quote_identifier(tables.name + m.group(1)), body)
    sql = body.format(message_columns=MESSAGE_COLUMN_DEFS)
    return [s.strip() for s in sql.split(";") if s.strip()]


def migrate_schema(conn: sqlite3.Connection, tables: Tables, shard_count: int) -> int:
    """Create or upgrade the schema in one transaction; return the effective shard count."""
    with immediate(conn):
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {tables.meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        version = int(_meta_value(conn, tables, "schema_version") or 0)
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the SQLite outbox {tables.name!r} has schema version {version}, newer than "
                f"this outboxkit ({SCHEMA_VERSION}): upgrade outboxkit"
            )
        for name in MIGRATIONS[version:]:
            for statement in _script(name, tables):
                conn.execute(statement)
        conn.execute(
            f"INSERT OR IGNORE INTO {tables.meta} (key, value) VALUES ('shard_count', ?)",
            (str(shard_count),),
        )
        conn.execute(
            f"INSERT OR REPLACE INTO {tables.meta} (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        effective = int(_meta_value(conn, tables, "shard_count") or shard_count)
        conn.executemany(
            f"INSERT OR IGNORE INTO {tables.leases} (shard) VALUES (?)",
            [(shard,) for shard in range(effective)],
        )
    return effective
