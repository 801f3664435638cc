"""Every Postgres writer passes the writer conformance suite against the real PostgreSQL:
asyncpg, SQLAlchemy (AsyncSession and AsyncConnection on asyncpg and psycopg, Session and
Connection on psycopg), psycopg (AsyncConnection, Connection) and Django (default and a named
database)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from outboxkit.testing import WriterConformance
from tests.support.pg_writers import ASYNC_HARNESSES, SYNC_HARNESSES, PgHarness, opened
from tests.support.postgres import outbox_schema

HARNESSES = {**ASYNC_HARNESSES, **SYNC_HARNESSES}


class TestPostgresWriterConformance(WriterConformance):
    @pytest.fixture(params=sorted(HARNESSES))
    async def writer_harness(
        self, request: pytest.FixtureRequest, postgres_url: str
    ) -> AsyncIterator[PgHarness]:
        async with outbox_schema(postgres_url, 4) as schema:
            harness = await opened(HARNESSES[request.param], postgres_url, schema)
            try:
                yield harness
            finally:
                await harness.close()
