"""Least privileges on PostgreSQL: roles granted exactly what docs/operations.md shows can
migrate, relay and write; a role missing one grant gets one line naming it, and nothing changes.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest
from outboxkit_postgres import PostgresOutbox

from outboxkit.errors import ConfigurationError
from outboxkit.testing import make_message
from tests.support.postgres import pg_connection

pytestmark = pytest.mark.anyio

RunCli = Callable[..., subprocess.CompletedProcess[str]]
OPERATIONS = Path(__file__).parents[3] / "docs" / "operations.md"
PASSWORD = "pw-Secret1"


def documented_grants() -> tuple[list[str], list[str]]:
    """The SQL of docs/operations.md's "Least privileges": (administrator, migrator) parts."""
    text = OPERATIONS.read_text()
    section = text[text.index("### Least privileges") :]
    block = section[section.index("```sql") + 6 : section.index("```", section.index("```sql") + 6)]
    admin, _, owner = block.partition("-- as outbox_migrator")
    owner = owner.partition("\n")[2]  # the rest of the comment line

    def statements(sql: str) -> list[str]:
        body = "\n".join(re.sub(r"--.*", "", line) for line in sql.splitlines())
        return [s.strip() for s in body.split(";") if s.strip()]

    return statements(admin), statements(owner)


@dataclass
class Deployment:
    """Throwaway roles and a schema name on the test server."""

    url: str
    schema: str
    roles: dict[str, str]  # documented name -> throwaway name

    def dsn(self, role: str) -> str:
        parts = urlsplit(self.url)
        netloc = f"{self.roles[role]}:{PASSWORD}@{parts.hostname}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def render(self, statement: str, database: str) -> str:
        for documented, actual in self.roles.items():
            statement = statement.replace(documented, actual)
        statement = statement.replace("PASSWORD '...'", f"PASSWORD '{PASSWORD}'")
        statement = statement.replace("DATABASE app", f'DATABASE "{database}"')
        return re.sub(r"\borders\b", self.schema, statement)

    async def run(self, conn: asyncpg.Connection, statements: list[str]) -> None:
        database = await conn.fetchval("SELECT current_database()")
        for statement in statements:
            await conn.execute(self.render(statement, database))


@pytest.fixture
async def deployment(postgres_url: str) -> AsyncIterator[Deployment]:
    tag = uuid.uuid4().hex[:8]
    roles = {
        name: f"{name}_{tag}"
        for name in ("outbox_migrator", "outbox_relay", "outbox_writer", "outbox_partial")
    }
    deployment = Deployment(postgres_url, f"t_{tag}", roles)
    admin, _ = documented_grants()
    async with pg_connection(postgres_url) as conn:
        await deployment.run(conn, admin)
        await conn.execute(f"CREATE ROLE {roles['outbox_partial']} LOGIN PASSWORD '{PASSWORD}'")
    try:
        yield deployment
    finally:
        async with pg_connection(postgres_url) as conn:
            database = await conn.fetchval("SELECT current_database()")
            for role in roles.values():
                await conn.execute(f"DROP OWNED BY {role} CASCADE")
            await conn.execute(
                f'REVOKE ALL ON DATABASE "{database}" FROM {", ".join(roles.values())}'
            )
            for role in roles.values():
                await conn.execute(f"DROP ROLE {role}")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "outboxkit: error:" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


async def schema_exists(url: str, schema: str) -> bool:
    async with pg_connection(url) as conn:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
        )
    return found


async def test_documented_grants_are_enough_and_a_missing_one_is_named(
    deployment: Deployment, run_cli: RunCli, workdir: Path
) -> None:
    d = deployment
    pg = ("--store", "pg", "--pg-schema", d.schema, "--pg-shard-count", "4")

    # A role without CREATE on the database: one line, nothing created.
    refused = one_line_error(run_cli("migrate", *pg, "--pg-dsn", d.dsn("outbox_relay")))
    assert f"may not create schema {d.schema}" in refused and "CREATE" in refused
    assert not await schema_exists(d.url, d.schema)

    migrated = run_cli("migrate", *pg, "--pg-dsn", d.dsn("outbox_migrator"))
    assert migrated.returncode == 0, migrated.stderr
    _, owner = documented_grants()
    async with pg_connection(d.dsn("outbox_migrator")) as conn:
        await d.run(conn, owner)

    # A role with the relay's grants but DELETE on the outbox (so no INSERT either: no writer).
    async with pg_connection(d.dsn("outbox_migrator")) as conn:
        partial = d.roles["outbox_partial"]
        await conn.execute(f"GRANT USAGE ON SCHEMA {d.schema} TO {partial}")
        await conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {d.schema}.outbox_dead, "
            f"{d.schema}.outbox_instances TO {partial}"
        )
        await conn.execute(f"GRANT SELECT, UPDATE ON {d.schema}.outbox TO {partial}")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON {d.schema}.outbox_leases TO {partial}")
        await conn.execute(f"GRANT SELECT ON {d.schema}.outbox_meta TO {partial}")

    # Writers with only the documented grants: one message and several.
    outbox = PostgresOutbox(schema=d.schema)
    messages = [make_message("a", 1), make_message("a", 2), make_message("b", 3)]
    async with pg_connection(d.dsn("outbox_writer")) as conn:
        async with conn.transaction():
            await outbox.add(conn, messages[0])
        async with conn.transaction():
            await outbox.add_many(conn, messages[1:])
    async with pg_connection(d.dsn("outbox_partial")) as conn:  # no INSERT: may not write
        with pytest.raises(ConfigurationError, match=f"role lacks INSERT on {d.schema}.outbox "):
            async with conn.transaction():
                await outbox.add(conn, make_message("c", 4))

    relay_args = ("relay", *pg, "--publisher", "stdout", "--exit-when-idle", "--lease-ttl", "3")
    missing = one_line_error(
        run_cli(*relay_args, "--stdout-path", "out.jsonl", "--pg-dsn", d.dsn("outbox_partial"))
    )
    assert f"lacks privileges the relay needs on outbox {d.schema}.outbox" in missing
    assert f": INSERT on {d.schema}.outbox, DELETE on {d.schema}.outbox; grant them" in missing
    assert "PASSWORD" not in missing and PASSWORD not in missing
    assert not (workdir / "out.jsonl").exists() or not (workdir / "out.jsonl").read_text()

    relayed = run_cli(*relay_args, "--stdout-path", "out.jsonl", "--pg-dsn", d.dsn("outbox_relay"))
    assert relayed.returncode == 0, relayed.stderr
    lines = (workdir / "out.jsonl").read_text().splitlines()
    assert sorted(msgspec.json.decode(line)["id"] for line in lines) == sorted(
        str(m.id) for m in messages
    )

    for command in (
        ("status", "--json"),
        ("dead-letters", "list"),
        ("dead-letters", "replay", "--all"),
    ):
        done = run_cli(*command, *pg, "--pg-dsn", d.dsn("outbox_relay"))
        assert done.returncode == 0, done.stderr


async def test_migrate_by_a_role_that_does_not_own_the_tables_changes_nothing(
    deployment: Deployment, run_cli: RunCli
) -> None:
    """An upgrade (schema version 1 here) run by a role with CREATE on the schema but not
    owning the tables: one line, and the schema version is still 1 (one transaction)."""
    d = deployment
    pg = ("--store", "pg", "--pg-schema", d.schema)
    assert run_cli("migrate", *pg, "--pg-dsn", d.dsn("outbox_migrator")).returncode == 0
    meta = f"{d.schema}.outbox_meta"
    async with pg_connection(d.dsn("outbox_migrator")) as conn:
        await conn.execute(f"UPDATE {meta} SET value = '1' WHERE key = 'schema_version'")
        await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {d.schema} TO {d.roles['outbox_relay']}")
        await conn.execute(f"GRANT SELECT ON {meta} TO {d.roles['outbox_relay']}")
    refused = one_line_error(run_cli("migrate", *pg, "--pg-dsn", d.dsn("outbox_relay")))
    assert f"may not migrate outbox {d.schema}.outbox (must be owner of" in refused
    async with pg_connection(d.url) as conn:
        version = await conn.fetchval(f"SELECT value FROM {meta} WHERE key = 'schema_version'")
    assert version == "1"
