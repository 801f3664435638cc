"""Bulk-loading pending rows into a Postgres outbox, fast, in SQL.

One real row is written by the plugin's writer as a template; ``INSERT ... SELECT`` over
``generate_series`` then copies it with a fresh id and aggregate id per row, letting every
column with a default (the sequence) take it. The shard column keeps the template's value, so
this is used with ``shard_count=1`` (every aggregate maps to shard 0, as the writer computes).
"""

from __future__ import annotations

import asyncpg

from benchmarks.support.pg_backlog import PgBacklog
from benchmarks.support.workload import make_message

__all__ = ["add_rows", "write_template"]

OVERRIDES = {"id": "gen_random_uuid()", "aggregate_id": "'agg-' || (g % {aggregates})"}


async def write_template(backlog: PgBacklog) -> None:
    async with backlog.pool.acquire() as conn, conn.transaction():
        await backlog.outbox.add(conn, make_message("bench", 0, 0, b"x" * 100))


async def _copied_columns(conn: asyncpg.Connection, backlog: PgBacklog) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND "
        "table_name = $2 AND column_default IS NULL AND is_identity = 'NO' "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position",
        backlog.settings.schema,
        backlog.settings.table,
    )
    return [str(r["column_name"]) for r in rows]


async def add_rows(backlog: PgBacklog, count: int, aggregates: int) -> None:
    """Add ``count`` pending rows copied from the template row, then ANALYZE."""
    async with backlog.pool.acquire() as conn:
        columns = await _copied_columns(conn, backlog)
        values = [
            OVERRIDES[c].format(aggregates=aggregates) if c in OVERRIDES else f't."{c}"'
            for c in columns
        ]
        names = ", ".join(f'"{c}"' for c in columns)
        await conn.execute(
            f"INSERT INTO {backlog.table} ({names}) SELECT {', '.join(values)} "
            f"FROM (SELECT * FROM {backlog.table} LIMIT 1) t, generate_series(1, {count}) g",
            timeout=900,
        )
        await conn.execute(f"ANALYZE {backlog.table}")
