"""What the Postgres writers add to the conformance suite: the objects they accept, the
configuration they share with the relay, missing schemas and round trips, per driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from outboxkit_postgres import PostgresOutbox, SyncPostgresOutbox, UnsupportedConnectionError

from outboxkit.errors import ConfigurationError, SchemaMissingError
from outboxkit.testing import make_message, unique_name
from tests.support.pg_writers import (
    ASYNC_HARNESSES,
    SYNC_HARNESSES,
    DjangoHarness,
    SqlalchemyAsyncHarness,
    opened,
)
from tests.support.postgres import execute, outbox_schema, scratch_schema

pytestmark = pytest.mark.anyio


async def _count(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox"))
    finally:
        await conn.close()


# -- what the writers accept -----------------------------------------------------------------


async def test_a_sync_session_given_to_the_async_writer_names_the_sync_one() -> None:
    from sqlalchemy.orm import Session

    with pytest.raises(UnsupportedConnectionError) as caught:
        await PostgresOutbox(read_config=False).add(Session(), make_message("a", 1))
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("PostgresOutbox takes an asyncpg Connection, an SQLAlchemy AsyncSession")
    assert "got sqlalchemy.orm.session.Session: for sync code use SyncPostgresOutbox" in text


async def test_an_async_session_given_to_the_sync_writer_names_the_async_one() -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    with pytest.raises(UnsupportedConnectionError, match="for async code use PostgresOutbox"):
        SyncPostgresOutbox(read_config=False).add(AsyncSession(), make_message("a", 1))


@pytest.mark.parametrize("wrong", [{"conn": 1}, "postgresql://x", None])
async def test_an_object_of_no_driver_is_refused_in_one_line(wrong: Any) -> None:
    with pytest.raises(UnsupportedConnectionError, match=r"^PostgresOutbox takes .*; got ") as e:
        await PostgresOutbox(read_config=False).add(wrong, make_message("a", 1))
    assert "\n" not in str(e.value)
    assert isinstance(e.value, TypeError)


async def test_an_sqlalchemy_engine_of_another_database_is_refused() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine("sqlite://")
    refused = pytest.raises(UnsupportedConnectionError, match=r"sqlite.*postgresql\+psycopg://")
    with Session(engine) as session, session.begin(), refused:
        SyncPostgresOutbox(read_config=False).add(session, make_message("a", 1))


def test_the_plugin_imports_and_refuses_clearly_without_the_optional_drivers() -> None:
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sqlalchemy", "psycopg", "django"):
            raise ImportError(f"blocked {name}")
sys.meta_path.insert(0, Block())
import asyncio
from outboxkit_postgres import PostgresOutbox, SyncPostgresOutbox, UnsupportedConnectionError
from outboxkit.testing import make_message
try:
    asyncio.run(PostgresOutbox(read_config=False).add(object(), make_message("a", 1)))
except UnsupportedConnectionError as exc:
    print("refused:", exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: PostgresOutbox takes an asyncpg Connection")


# -- a schema that is not migrated -----------------------------------------------------------


@pytest.mark.parametrize("driver", sorted({**ASYNC_HARNESSES, **SYNC_HARNESSES}))
async def test_an_outbox_that_is_not_migrated_names_the_migrate_command(
    postgres_url: str, driver: str
) -> None:
    factory = {**ASYNC_HARNESSES, **SYNC_HARNESSES}[driver]
    async with scratch_schema(postgres_url) as schema:
        await execute(postgres_url, f"CREATE SCHEMA {schema}")
        harness = await opened(factory, postgres_url, schema)
        try:
            with pytest.raises(
                SchemaMissingError,
                match=f"^outbox {schema}.outbox does not exist: run `outboxkit migrate --store pg`",
            ):
                await harness.write([make_message("a", 1)], outcome="rollback")
        finally:
            await harness.close()


# -- one round trip --------------------------------------------------------------------------


async def test_sqlalchemy_batch_is_one_statement(postgres_url: str) -> None:
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncSession

    async with outbox_schema(postgres_url, 4) as schema:
        harness = SqlalchemyAsyncHarness(postgres_url, schema, "asyncpg")
        statements: list[str] = []
        event.listen(
            harness.engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, sql, *_: statements.append(sql),
        )
        try:
            async with AsyncSession(harness.engine) as session, session.begin():
                await harness.outbox.add_many(
                    session, [make_message(f"agg-{i % 7}", i) for i in range(500)]
                )
        finally:
            await harness.close()
        assert len(statements) == 1, statements
        assert await _count(postgres_url, schema) == 500


async def test_django_batch_is_one_statement(postgres_url: str) -> None:
    async with outbox_schema(postgres_url, 4) as schema:
        harness = DjangoHarness(postgres_url, schema, "orders")
        statements: list[str] = []

        def batch() -> None:
            from django.db import connections, transaction

            conn = connections["orders"]

            def log(run: Any, sql: str, *args: Any) -> Any:
                statements.append(sql)
                return run(sql, *args)

            try:
                with transaction.atomic(using="orders"), conn.execute_wrapper(log):
                    harness.outbox.add_many(
                        conn, [make_message(f"agg-{i % 7}", i) for i in range(500)]
                    )
            finally:
                conn.close()

        import anyio

        await anyio.to_thread.run_sync(batch)
        assert len(statements) == 1, statements
        assert await _count(postgres_url, schema) == 500


# -- the relay's configuration ---------------------------------------------------------------


async def test_a_writer_without_a_schema_takes_the_configured_one(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with outbox_schema(postgres_url, 4) as schema:
        harness = await opened(
            ASYNC_HARNESSES["sqlalchemy-asyncsession-psycopg"], postgres_url, schema
        )
        harness.outbox = PostgresOutbox()  # built before the environment is set
        monkeypatch.setenv("OUTBOXKIT_PG_SCHEMA", schema)
        try:
            await harness.write([make_message("a", 1)])
        finally:
            await harness.close()
        assert await _count(postgres_url, schema) == 1
        assert isinstance(harness.outbox, PostgresOutbox)
        assert harness.outbox.names.schema == schema


async def test_an_explicit_schema_that_disagrees_with_the_environment_is_refused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with outbox_schema(postgres_url, 4) as schema, outbox_schema(postgres_url, 4) as other:
        monkeypatch.setenv("OUTBOXKIT_PG_SCHEMA", other)
        conn = await asyncpg.connect(postgres_url)
        try:
            with pytest.raises(ConfigurationError) as caught:
                async with conn.transaction():
                    await PostgresOutbox(schema=schema).add(conn, make_message("a", 1))
        finally:
            await conn.close()
        assert str(caught.value).startswith(
            f"PostgresOutbox(schema={schema!r}) disagrees with OUTBOXKIT_PG_SCHEMA = {other!r}, "
            "which the relay reads too"
        )
        assert await _count(postgres_url, schema) == 0
        assert await _count(postgres_url, other) == 0


async def test_an_explicit_table_that_disagrees_with_the_config_file_is_refused(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outboxkit.toml").write_text('store = "pg"\n[pg]\ntable = "events"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUTBOXKIT_PG_TABLE", raising=False)
    monkeypatch.delenv("OUTBOXKIT_CONFIG", raising=False)
    with pytest.raises(
        ConfigurationError, match=r"disagrees with outboxkit.toml \[pg\] table = 'events'"
    ):
        SyncPostgresOutbox(table="outbox").add(object(), make_message("a", 1))


async def test_a_configured_schema_that_is_not_migrated_names_migrate_and_the_source(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = unique_name("missing")
    monkeypatch.setenv("OUTBOXKIT_PG_SCHEMA", missing)
    conn = await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(SchemaMissingError) as caught:
            async with conn.transaction():
                await PostgresOutbox().add(conn, make_message("a", 1))
    finally:
        await conn.close()
    assert str(caught.value) == (
        f"outbox {missing}.outbox does not exist: run `outboxkit migrate --store pg` with the "
        "same schema and table (schema from OUTBOXKIT_PG_SCHEMA)"
    )
