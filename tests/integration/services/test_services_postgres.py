"""Smoke test: the PostgreSQL server the tests use answers, commits, and runs wal_level=logical."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.anyio


async def test_postgres_commit_and_read_back(postgres_url: str) -> None:
    table = f"smoke_{uuid.uuid4().hex}"
    writer = await asyncpg.connect(postgres_url)
    try:
        assert await writer.fetchval("show wal_level") == "logical"
        await writer.execute(f"create table {table} (id uuid primary key, body text not null)")
        row_id = uuid.uuid4()
        async with writer.transaction():
            await writer.execute(f"insert into {table} (id, body) values ($1, $2)", row_id, "hello")
        reader = await asyncpg.connect(postgres_url)  # another session sees only committed rows
        try:
            assert (
                await reader.fetchval(f"select body from {table} where id = $1", row_id) == "hello"
            )
        finally:
            await reader.close()
    finally:
        await writer.execute(f"drop table if exists {table}")
        await writer.close()
