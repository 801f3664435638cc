"""Versioned schema migrations: ``sql/NNNN_*.sql`` applied in order, in one transaction.

Concurrent runs are serialised by a session advisory lock in outboxkit's own two-key class
(:data:`~outboxkit_postgres.names.MIGRATION_LOCK`). A schema already at the latest version is
only read, so re-running needs no CREATE privilege; a refused privilege rolls everything back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.resources import files

import asyncpg

from outboxkit.errors import ConfigurationError
from outboxkit.sql_names import quote_identifier
from outboxkit_postgres.names import MIGRATION_LOCK, OutboxNames
from outboxkit_postgres.privileges import GUIDE, migrate_denied

__all__ = ["LATEST_VERSION", "migrate"]

log = logging.getLogger("outboxkit.postgres")

_STATE = """
SELECT current_user::text AS role, current_database()::text AS database,
       has_database_privilege(current_database(), 'CREATE') AS create_schema,
       n.oid IS NOT NULL AS schema_exists,
       has_schema_privilege(n.oid, 'USAGE') AND has_schema_privilege(n.oid, 'CREATE')
           AS create_tables,
       EXISTS (SELECT 1 FROM pg_class AS c WHERE c.relnamespace = n.oid AND c.relname = $2)
           AS meta_exists
FROM (SELECT 1) AS one LEFT JOIN pg_namespace AS n ON n.nspname = $1
"""


def _migrations() -> list[tuple[int, str]]:
    folder = files("outboxkit_postgres").joinpath("sql")
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text("utf-8")))
    return sorted(found)


LATEST_VERSION = max(version for version, _ in _migrations())


async def migrate(conn: asyncpg.Connection, names: OutboxNames, shard_count: int) -> int:
    """Bring the schema to the latest version; return the shard count in force.

    Re-running is a no-op. The shard count is fixed by the first run; a different value later
    is ignored with a warning (changing it would move aggregates between shards).
    """
    if shard_count < 1:
        raise ConfigurationError(f"shard_count must be >= 1, got {shard_count}")
    await conn.execute("SELECT pg_advisory_lock($1, $2)", *MIGRATION_LOCK)
    try:
        async with conn.transaction():
            state = await conn.fetchrow(_STATE, names.schema, f"{names.table}_meta")
            assert state is not None
            try:
                return await _migrate(conn, names, shard_count, state)
            except asyncpg.InsufficientPrivilegeError as exc:
                raise migrate_denied(exc, names, state["role"]) from None
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", *MIGRATION_LOCK)


async def _migrate(
    conn: asyncpg.Connection, names: OutboxNames, shard_count: int, state: Mapping[str, object]
) -> int:
    meta: dict[str, str] = {}
    if state["meta_exists"]:
        rows = await conn.fetch(names.render("SELECT key, value FROM {{schema}}.{{table}}_meta"))
        meta = {row["key"]: row["value"] for row in rows}
    version = int(meta.get("schema_version", "0"))
    fixed = int(meta.get("shard_count", shard_count))
    if fixed != shard_count:
        log.warning(
            "%s keeps its %d shards (fixed at setup); ignoring shard_count=%d",
            names.qualified,
            fixed,
            shard_count,
        )
    pending = [(number, sql) for number, sql in _migrations() if number > version]
    if not pending:
        return fixed
    _check_create(names, state)
    if not state["schema_exists"]:
        await conn.execute(f"CREATE SCHEMA {quote_identifier(names.schema)}")
    await conn.execute(
        names.render(
            "CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_meta "
            "(key text PRIMARY KEY, value text NOT NULL)"
        )
    )
    for number, sql in pending:
        await conn.execute(names.render(sql, shard_count=str(fixed)))
        await conn.execute(
            names.render(
                "INSERT INTO {{schema}}.{{table}}_meta (key, value) VALUES "
                "('schema_version', $1), ('shard_count', $2) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            str(number),
            str(fixed),
        )
        log.info("%s migrated to schema version %d", names.qualified, number)
    return fixed


def _check_create(names: OutboxNames, state: Mapping[str, object]) -> None:
    """Refuse, naming the missing privilege, before any DDL."""
    role = str(state["role"])
    if not state["schema_exists"] and not state["create_schema"]:
        create = f"CREATE SCHEMA {quote_identifier(names.schema)} AUTHORIZATION {role}"
        raise ConfigurationError(
            f"role {role!r} may not create schema {names.schema} in database "
            f"{state['database']!r}: grant it CREATE on the database, or create the schema for "
            f"it ({create}) ({GUIDE})"
        )
    if state["schema_exists"] and not state["create_tables"]:
        raise ConfigurationError(
            f"role {role!r} may not create the outbox tables in schema {names.schema}: grant it "
            f"USAGE and CREATE on the schema ({GUIDE})"
        )
