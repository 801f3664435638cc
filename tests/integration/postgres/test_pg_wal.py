"""The log-tailing pieces on the real PostgreSQL: the WAL-only writer, pgoutput decoding of
what it emits, the slot's admin commands, status, and the one-line start-up errors."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresWalOutbox
from outboxkit_postgres.codec import decode_wal_messages
from outboxkit_postgres.log_wake import MAX_PAYLOAD, wake_payloads
from outboxkit_postgres.pgoutput import Begin, Commit, Insert, LogicalMessage, Relation
from outboxkit_postgres.wal_store import PostgresWalStore, create_store

from outboxkit.errors import ConfigurationError, InvalidMessageError, TransactionRequiredError
from outboxkit.testing import make_message
from tests.support.postgres import pg_connection, slot_changes, wal_outbox

pytestmark = pytest.mark.anyio

RunCli = Callable[..., subprocess.CompletedProcess[str]]


async def test_wal_writer_emits_one_message_per_commit_and_nothing_on_rollback(
    postgres_url: str,
) -> None:
    async with wal_outbox(postgres_url) as schema:
        outbox = PostgresWalOutbox(schema=schema)
        batch = [make_message("a", headers={"h": "1"}) for _ in range(3)]
        async with pg_connection(postgres_url) as conn:
            async with conn.transaction():
                await outbox.add_many(conn, batch)
            tx = conn.transaction()
            await tx.start()
            await outbox.add(conn, make_message("b"))
            await tx.rollback()
        records = await slot_changes(postgres_url, f"outboxkit_{schema}_outbox")

    messages = [r for r in records if isinstance(r, LogicalMessage)]
    assert [type(r) for r in records] == [Begin, LogicalMessage, Commit]
    (emitted,) = messages
    assert emitted.transactional and emitted.prefix == f"outboxkit:{schema}.outbox"
    assert decode_wal_messages(emitted.content) == batch


async def test_wal_writer_validates_first_and_needs_a_transaction(postgres_url: str) -> None:
    outbox = PostgresWalOutbox()
    async with pg_connection(postgres_url) as conn:
        with pytest.raises(TransactionRequiredError):
            await outbox.add(conn, make_message("a"))
        async with conn.transaction():
            with pytest.raises(InvalidMessageError, match="NUL"):
                await outbox.add_many(
                    conn, [make_message("a"), make_message("a", headers={"h": "a\x00"})]
                )


async def test_log_woken_slot_carries_the_shard_of_each_insert(postgres_url: str) -> None:
    async with wal_outbox(postgres_url, 4, mode="table", wake_from_log=True) as schema:
        outbox = PostgresOutbox(schema=schema, notify=False)
        messages = [make_message(f"agg-{n}") for n in range(6)]
        async with pg_connection(postgres_url) as conn:
            async with conn.transaction():
                await outbox.add_many(conn, messages)
            expected = {r["shard"] for r in await conn.fetch(f"SELECT shard FROM {schema}.outbox")}
        records = await slot_changes(postgres_url, f"outboxkit_{schema}_outbox")

    (relation,) = [r for r in records if isinstance(r, Relation)]
    column = relation.columns.index("shard")
    inserts = [r for r in records if isinstance(r, Insert)]
    assert len(inserts) == 6
    assert {int(str(i.values[column])) for i in inserts} == expected


def test_wake_payloads_stay_under_the_notify_limit() -> None:
    payloads = wake_payloads(set(range(4096)))
    assert all(len(p) <= MAX_PAYLOAD for p in payloads)
    assert sorted(int(s) for p in payloads for s in p.split(",")) == list(range(4096))


def test_wake_from_log_with_wal_mode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="wake_from_log applies to mode=table"):
        create_store(PostgresSettings(mode="wal", wake_from_log=True))


async def test_status_shows_the_slot_and_drop_slot_removes_it(
    postgres_url: str, run_cli: RunCli
) -> None:
    async with wal_outbox(postgres_url) as schema:
        pg = ["--store", "pg", "--pg-dsn", postgres_url, "--pg-schema", schema]
        status = run_cli("status", *pg, "--pg-mode", "wal", "--json")
        assert status.returncode == 0, status.stderr
        slot = json.loads(status.stdout)["slot"]
        assert slot["name"] == f"outboxkit_{schema}_outbox"
        assert slot["lag_bytes"] >= 0 and slot["holder"] is None
        text = run_cli("status", *pg, "--pg-mode", "wal", "--pg-slot-lag-warning-bytes", "0")
        assert "slot lag:" in text.stdout and "warning:" in text.stdout, text.stdout

        not_tailing = run_cli("drop-slot", *pg)
        assert not_tailing.returncode != 0
        assert len(not_tailing.stderr.strip().splitlines()) == 1, not_tailing.stderr
        dropped = run_cli("drop-slot", *pg, "--pg-mode", "wal")
        assert dropped.returncode == 0, dropped.stderr
        assert "dropped" in dropped.stdout
        async with pg_connection(postgres_url) as conn:
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot["name"]
            )
        assert left == 0
        missing = run_cli("relay", *pg, "--pg-mode", "wal", "--publisher", "stdout")
        assert missing.returncode != 0
        line = missing.stderr.strip().splitlines()[-1]
        assert "does not exist: run `outboxkit migrate" in line


async def test_a_role_without_replication_gets_one_line(postgres_url: str) -> None:
    role = f"okt_norepl_{uuid.uuid4().hex[:8]}"
    async with pg_connection(postgres_url) as conn:
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-Secret1'")
    try:
        parts = urlsplit(postgres_url)
        host = parts.netloc.rpartition("@")[2]
        dsn = urlunsplit(parts._replace(netloc=f"{role}:pw-Secret1@{host}"))
        store = PostgresWalStore(PostgresSettings(dsn=dsn, mode="wal"))
        with pytest.raises(ConfigurationError, match="REPLICATION attribute") as refused:
            await store.open()
        assert "\n" not in str(refused.value)
    finally:
        with anyio.CancelScope(shield=True):
            async with pg_connection(postgres_url) as conn:
                await conn.execute(f"DROP ROLE {role}")


async def test_log_drained_only_once_the_slot_passed_every_commit_before_the_check(
    postgres_url: str,
) -> None:
    """``exit_when_idle``'s check in WAL mode: the slot's confirmed position must reach the
    server's WAL position taken at the check (here moved by ``pg_replication_slot_advance``,
    as a reader confirms)."""
    async with wal_outbox(postgres_url) as schema:
        store = PostgresWalStore(PostgresSettings(dsn=postgres_url, schema=schema, mode="wal"))
        await store.open()
        try:
            async with pg_connection(postgres_url) as conn:
                before: int = await conn.fetchval("SELECT pg_current_wal_lsn()")
                async with conn.transaction():
                    await PostgresWalOutbox(schema=schema).add(conn, make_message("a"))

                async def advance(lsn: int | None) -> None:
                    await conn.execute(
                        "SELECT pg_replication_slot_advance($1, coalesce($2::pg_lsn, "
                        "pg_current_wal_lsn()))",
                        store.slot_name,
                        lsn,
                    )

                async def read_on() -> None:  # a reader confirming as the WAL grows
                    while True:
                        await advance(None)
                        await anyio.sleep(0.05)

                assert not await store.log_drained(0.3), "nothing read the slot"
                await advance(before)
                assert not await store.log_drained(0.3), "the commit was not read"
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_on)
                    assert await store.log_drained(5.0)
                    tg.cancel_scope.cancel()
        finally:
            await store.close()
