"""Versioned schema migrations: ``sql/NNNN_*.sql`` applied in order under an advisory lock
in outboxkit's own two-key class (:data:`~outboxkit_postgres.names.MIGRATION_LOCK`)."""

from __future__ import annotations

import logging
from importlib.resources import files

import asyncpg

from outboxkit.errors import ConfigurationError
from outboxkit.identifiers import quote_identifier
from outboxkit_postgres.names import MIGRATION_LOCK, OutboxNames

__all__ = ["LATEST_VERSION", "migrate"]

log = logging.getLogger("outboxkit.postgres")


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
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(names.schema)}")
            await conn.execute(
                names.render(
                    "CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_meta "
                    "(key text PRIMARY KEY, value text NOT NULL)"
                )
            )
            rows = await conn.fetch(
                names.render("SELECT key, value FROM {{schema}}.{{table}}_meta")
            )
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
        for number, sql in _migrations():
            if number <= version:
                continue
            async with conn.transaction():
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
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", *MIGRATION_LOCK)
