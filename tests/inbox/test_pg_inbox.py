"""The PostgreSQL inbox against a real server: duplicates, races, the guard, batches,
retention and the ``outboxkit inbox`` commands."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any
from uuid import UUID

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresInbox

from outboxkit.errors import SchemaMissingError, TransactionRequiredError
from outboxkit.inbox import InboxMessage, Verdict, decode
from outboxkit.message import HEADER_SEQUENCE, Message, broker_headers
from outboxkit.uuidv7 import uuid7, uuid7_floor
from tests.inbox.inbox_support import scratch_schema

pytestmark = pytest.mark.anyio


def written_ago(seconds: float) -> UUID:
    """A UUIDv7 id of an event written ``seconds`` ago."""
    fresh = uuid7()
    return UUID(int=uuid7_floor(time.time() - seconds).int | (fresh.int & ((1 << 76) - 1)))


def event(aggregate: str = "acc", sequence: int | None = None, **fields: Any) -> InboxMessage:
    m = Message.create(aggregate_type="account", aggregate_id=aggregate, event_type="e", payload=1)
    if fields:
        m = Message(**{**{f: getattr(m, f) for f in m.__struct_fields__}, **fields})
    headers = dict(broker_headers(m)) | ({HEADER_SEQUENCE: str(sequence)} if sequence else {})
    return decode(headers | {"content-type": m.content_type}, m.payload)


STATE = "CREATE TABLE {s}.state (id text PRIMARY KEY, n int NOT NULL)"
BUMP = "INSERT INTO {s}.state VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = state.n + 1"


async def _count(conn: asyncpg.Connection, schema: str) -> int:
    return int(await conn.fetchval(f"SELECT coalesce(sum(n), 0) FROM {schema}.state"))


async def test_a_duplicate_is_skipped_and_a_rollback_records_nothing(postgres_url: str) -> None:
    async with scratch_schema(postgres_url) as scratch:
        s, conn = scratch.schema, await scratch.connect()
        await conn.execute(STATE.format(s=s))
        inbox, m = PostgresInbox(schema=s), event()
        with pytest.raises(RuntimeError):
            async with inbox.process(conn, m) as fresh:
                assert fresh
                await conn.execute(BUMP.format(s=s), "acc")
                raise RuntimeError("the handler failed")
        verdicts = []
        for _ in range(3):
            async with inbox.process(conn, m) as fresh:
                verdicts.append(fresh)
                if fresh:
                    await conn.execute(BUMP.format(s=s), "acc")
        assert verdicts == [Verdict.FRESH, Verdict.DUPLICATE, Verdict.DUPLICATE]
        assert await _count(conn, s) == 1
        with pytest.raises(TransactionRequiredError, match="caller's transaction"):
            await inbox.record(conn, [m])
        await conn.close()


@pytest.mark.parametrize("first_commits", [True, False])
async def test_two_consumers_racing_on_one_message_apply_it_once(
    postgres_url: str, first_commits: bool
) -> None:
    """The second waits on the first's uncommitted id; it applies the message only if the
    first rolled back."""
    async with scratch_schema(postgres_url) as scratch:
        s = scratch.schema
        a, b = await scratch.connect(), await scratch.connect()
        await a.execute(STATE.format(s=s))
        inbox, m = PostgresInbox(schema=s), event()
        verdicts: list[Verdict] = []
        entered = anyio.Event()

        async def second() -> None:
            await entered.wait()
            async with inbox.process(b, m) as fresh:
                verdicts.append(fresh)
                if fresh:
                    await b.execute(BUMP.format(s=s), "acc")

        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            try:
                async with inbox.process(a, m) as fresh:
                    verdicts.append(fresh)
                    await a.execute(BUMP.format(s=s), "acc")
                    entered.set()
                    await anyio.sleep(0.5)  # the second is blocked on the id meanwhile
                    assert len(verdicts) == 1
                    if not first_commits:
                        raise LookupError
            except LookupError:
                pass
        expected = Verdict.DUPLICATE if first_commits else Verdict.FRESH
        assert verdicts == [Verdict.FRESH, expected]
        assert await _count(a, s) == 1
        await a.close()
        await b.close()


@pytest.mark.parametrize("guard", ["skip", "park"])
async def test_the_guard_skips_or_parks_older_events(postgres_url: str, guard: str) -> None:
    async with scratch_schema(postgres_url) as scratch:
        s, conn = scratch.schema, await scratch.connect()
        inbox = PostgresInbox(schema=s, guard=guard)  # type: ignore[arg-type]
        e1, e2, e3, other = event(sequence=1), event(sequence=2), event(sequence=3), event("b", 1)
        async with inbox.process_batch(conn, [e2, e1, other]) as fresh:
            assert fresh == [e2, other]
        async with inbox.process(conn, e3) as v3:
            assert v3 is Verdict.FRESH
        async with inbox.process(conn, e1) as again:
            assert again is Verdict.DUPLICATE  # its id was recorded when it was judged stale
        parked = await conn.fetch(f"SELECT id, sequence, last_sequence FROM {s}.inbox_parked")
        if guard == "park":
            assert [(r["id"], r["sequence"], r["last_sequence"]) for r in parked] == [(e1.id, 1, 2)]
        else:
            assert parked == []
        last = await conn.fetchval(
            f"SELECT last_sequence FROM {s}.inbox_aggregates WHERE aggregate_id = 'acc'"
        )
        assert last == 3
        await conn.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outboxkit.cli", "inbox", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )


async def test_prune_removes_old_ids_in_batches_from_the_cli(postgres_url: str) -> None:
    async with scratch_schema(postgres_url) as scratch:
        s, conn = scratch.schema, await scratch.connect()
        opts = ["--inbox", "pg", "--pg-inbox-dsn", postgres_url, "--pg-inbox-schema", s]
        assert _cli("migrate", *opts).returncode == 0  # re-runnable
        inbox = PostgresInbox(schema=s)
        old = [event(id=written_ago(2 * 86400)) for _ in range(25)]
        async with inbox.process_batch(conn, [*old, event()]) as fresh:
            assert len(fresh) == 26
        pruned = _cli("prune", *opts, "--older-than", "1d", "--batch-size", "10")
        assert pruned.returncode == 0, pruned.stderr
        assert "pruned 25 processed ids" in pruned.stdout
        status = _cli("status", *opts)
        assert "processed: 1" in status.stdout
        await conn.close()
    bad = _cli(
        "prune",
        "--inbox",
        "pg",
        "--pg-inbox-dsn",
        postgres_url,
        "--pg-inbox-schema",
        "nowhere",
        "--older-than",
        "1d",
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "outboxkit inbox migrate" in bad.stderr


async def test_a_missing_inbox_table_says_how_to_create_it(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(SchemaMissingError, match="outboxkit inbox migrate"):
            async with PostgresInbox(schema="public", table="no_such_inbox").process(conn, event()):
                pass
    finally:
        await conn.close()
