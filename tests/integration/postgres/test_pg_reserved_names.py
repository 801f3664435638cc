"""Reserved words as the pg store's schema and table names: migrate, write, relay and status
work, because every name reaches SQL quoted; names that are not valid are still refused."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
from outboxkit_postgres import PostgresOutbox

from outboxkit.testing import make_message
from tests.support.postgres import pg_connection

pytestmark = pytest.mark.anyio

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(params=["reserved schema", "reserved table"])
async def names(
    request: pytest.FixtureRequest, postgres_url: str
) -> AsyncIterator[tuple[str, str]]:
    """(schema, table): ``user`` with a throwaway table, or a throwaway schema with ``order``.

    Schema ``user`` may be shared with a concurrent run, so only this test's objects are dropped.
    """
    unique = f"t_{uuid.uuid4().hex[:12]}"
    schema, table = ("user", unique) if request.param == "reserved schema" else (unique, "order")
    yield schema, table
    async with pg_connection(postgres_url) as conn:
        if schema == "user":
            for suffix in ("", "_dead", "_leases", "_instances", "_meta"):
                await conn.execute(f'DROP TABLE IF EXISTS "user"."{table}{suffix}"')
            await conn.execute(f'DROP FUNCTION IF EXISTS "user"."{table}_add"')
            await conn.execute(
                'DO $$ BEGIN DROP SCHEMA IF EXISTS "user"; '
                "EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$"
            )
        else:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_migrate_write_relay_status_with_reserved_words(
    names: tuple[str, str], postgres_url: str, run_cli: RunCli, workdir: Path
) -> None:
    schema, table = names
    pg = ("--store", "pg", "--pg-dsn", postgres_url, "--pg-schema", schema, "--pg-table", table)
    migrated = run_cli("migrate", *pg, "--shards", "4")
    assert migrated.returncode == 0, migrated.stderr
    assert run_cli("migrate", *pg).returncode == 0  # re-runnable

    outbox = PostgresOutbox(schema=schema, table=table)
    messages = [make_message("a", 1), make_message("a", 2), make_message("b", 3)]
    async with pg_connection(postgres_url) as conn:
        async with conn.transaction():
            await outbox.add(conn, messages[0])  # the one-statement path
        async with conn.transaction():
            await outbox.add_many(conn, messages[1:])  # the <table>_add function

    status = run_cli("status", *pg, "--json")
    assert status.returncode == 0, status.stderr
    assert msgspec.json.decode(status.stdout)["pending"] == 3

    relay = ("relay", *pg, "--publisher", "stdout", "--stdout-path", "out.jsonl")
    relayed = run_cli(*relay, "--exit-when-idle", "--lease-ttl", "3")
    assert relayed.returncode == 0, relayed.stderr
    published = [
        msgspec.json.decode(line) for line in (workdir / "out.jsonl").read_text().splitlines()
    ]
    assert sorted(p["id"] for p in published) == sorted(str(m.id) for m in messages)
    assert [p["id"] for p in published if p["aggregate_id"] == "a"] == [
        str(m.id) for m in messages[:2]
    ]
    listed = run_cli("dead-letters", "list", *pg)
    assert listed.returncode == 0 and "no dead letters" in listed.stdout, listed.stderr


@pytest.mark.parametrize("bad", ['us"er', "User", "1st", "a b", "x" * 49])
def test_invalid_names_are_still_refused(bad: str, run_cli: RunCli, postgres_url: str) -> None:
    result = run_cli("migrate", "--store", "pg", "--pg-dsn", postgres_url, "--pg-schema", bad)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is not allowed" in result.stderr
