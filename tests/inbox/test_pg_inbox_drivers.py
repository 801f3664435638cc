"""The PostgreSQL inbox on the connections of SQLAlchemy and psycopg (async and sync) and
Django, each used the way its users do (the writer harnesses of ``tests.support.pg_writers``):
a duplicate is skipped, a rollback records nothing, two racing consumers apply once, the guard
parks through the driver, and outside a transaction the inbox refuses."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.from_thread
import asyncpg
import pytest
from outboxkit_postgres import PostgresInbox, SyncPostgresInbox, UnsupportedConnectionError

from outboxkit.errors import SchemaMissingError, TransactionRequiredError
from outboxkit.inbox import InboxMessage, Verdict
from tests.inbox.inbox_support import scratch_schema
from tests.inbox.test_pg_inbox import event
from tests.support.pg_writers import (
    ASYNC_HARNESSES,
    SYNC_HARNESSES,
    AsyncHarness,
    PgHarness,
    SyncHarness,
)

pytestmark = pytest.mark.anyio

DRIVERS = {k: v for k, v in ASYNC_HARNESSES.items() if k != "asyncpg"} | {
    k: v for k, v in SYNC_HARNESSES.items() if k != "django-named"
}
STATE = "CREATE TABLE {s}.state (id text PRIMARY KEY, n int NOT NULL)"
BUMP = "INSERT INTO {s}.state VALUES ('acc', 1) ON CONFLICT (id) DO UPDATE SET n = state.n + 1"


class Failure(Exception):
    """The handler failed."""


class Consumer:
    """Processes one message in a transaction of ``harness``'s driver: bumps the state if
    fresh, then awaits ``on_enter`` and raises :class:`Failure` if ``fail``."""

    def __init__(self, harness: PgHarness, guard: Any = "off") -> None:
        self.harness = harness
        schema = harness.schema
        self.sync = isinstance(harness, SyncHarness)
        self.inbox = (SyncPostgresInbox if self.sync else PostgresInbox)(schema=schema, guard=guard)
        self.bump = BUMP.format(s=schema)

    async def run(
        self,
        messages: list[InboxMessage],
        on_enter: Callable[[], Awaitable[None]] | None = None,
        fail: bool = False,
    ) -> list[InboxMessage]:
        if self.sync:
            return await anyio.to_thread.run_sync(self._run_sync, messages, on_enter, fail)
        h = self.harness
        assert isinstance(h, AsyncHarness) and isinstance(self.inbox, PostgresInbox)
        async with (
            h.connect() as conn,
            h.transaction(conn),
            self.inbox.process_batch(h.target(conn), messages) as fresh,
        ):
            if fresh:
                await h.execute(conn, self.bump)
            if on_enter is not None:
                await on_enter()
            if fail:
                raise Failure
        return fresh

    def _run_sync(
        self,
        messages: list[InboxMessage],
        on_enter: Callable[[], Awaitable[None]] | None,
        fail: bool,
    ) -> list[InboxMessage]:
        h = self.harness
        assert isinstance(h, SyncHarness) and isinstance(self.inbox, SyncPostgresInbox)
        with (
            h.connect() as conn,
            h.transaction(conn),
            self.inbox.process_batch(h.target(conn), messages) as fresh,
        ):
            if fresh:
                h.execute(conn, self.bump)
            if on_enter is not None:
                anyio.from_thread.run(on_enter)
            if fail:
                raise Failure
        return fresh

    async def process_one(self, message: InboxMessage) -> Verdict:
        fresh = await self.run([message])
        return Verdict.FRESH if fresh else Verdict.DUPLICATE

    async def outside(self, message: InboxMessage) -> None:
        """Process ``message`` with no transaction open."""
        h = self.harness
        if isinstance(h, SyncHarness):

            def run() -> None:
                assert isinstance(self.inbox, SyncPostgresInbox)
                with h.connect() as conn, self.inbox.process(h.target(conn), message):
                    pass

            await anyio.to_thread.run_sync(run)
            return
        assert isinstance(h, AsyncHarness) and isinstance(self.inbox, PostgresInbox)
        async with h.connect() as conn, self.inbox.process(h.target(conn), message):
            pass


async def _state(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT coalesce(sum(n), 0) FROM {schema}.state"))
    finally:
        await conn.close()


async def _consumer(dsn: str, schema: str, driver: str, guard: Any = "off") -> Consumer:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(STATE.format(s=schema))
    finally:
        await conn.close()
    return Consumer(DRIVERS[driver](dsn, schema), guard)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_duplicate_is_skipped_and_a_rollback_records_nothing(
    postgres_url: str, driver: str
) -> None:
    async with scratch_schema(postgres_url) as scratch:
        consumer = await _consumer(postgres_url, scratch.schema, driver)
        m = event()
        try:
            with pytest.raises(Failure):
                await consumer.run([m], fail=True)
            verdicts = [await consumer.process_one(m) for _ in range(3)]
            assert verdicts == [Verdict.FRESH, Verdict.DUPLICATE, Verdict.DUPLICATE]
            assert await _state(postgres_url, scratch.schema) == 1
            with pytest.raises(TransactionRequiredError, match=r"caller's transaction: call it"):
                await consumer.outside(event())
        finally:
            await consumer.harness.close()


@pytest.mark.parametrize("first_commits", [True, False])
@pytest.mark.parametrize("driver", DRIVERS)
async def test_two_consumers_racing_on_one_message_apply_it_once(
    postgres_url: str, driver: str, first_commits: bool
) -> None:
    """The second waits on the first's uncommitted id; it applies the message only if the
    first rolled back."""
    async with scratch_schema(postgres_url) as scratch:
        consumer = await _consumer(postgres_url, scratch.schema, driver)
        m = event()
        results: list[Verdict] = []
        entered = anyio.Event()

        async def second() -> None:
            await entered.wait()
            results.append(await consumer.process_one(m))

        async def hold() -> None:
            entered.set()
            await anyio.sleep(0.5)  # the second is blocked on the id meanwhile
            assert results == []

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(second)
                with contextlib.suppress(Failure):
                    assert await consumer.run([m], on_enter=hold, fail=not first_commits) == [m]
            assert results == [Verdict.DUPLICATE if first_commits else Verdict.FRESH]
            assert await _state(postgres_url, scratch.schema) == 1
        finally:
            await consumer.harness.close()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_the_guard_parks_an_older_event_through_the_driver(
    postgres_url: str, driver: str
) -> None:
    async with scratch_schema(postgres_url) as scratch:
        s = scratch.schema
        consumer = await _consumer(postgres_url, s, driver, guard="park")
        e1, e2, other = event(sequence=1), event(sequence=2), event("b", 1)
        try:
            assert await consumer.run([e2, e1, other]) == [e2, other]
            assert await consumer.run([e1]) == []
        finally:
            await consumer.harness.close()
        conn = await scratch.connect()
        try:
            parked = await conn.fetch(
                f"SELECT id, sequence, last_sequence, payload FROM {s}.inbox_parked"
            )
            assert [tuple(r) for r in parked] == [(e1.id, 1, 2, e1.message.payload)]
        finally:
            await conn.close()


async def test_a_missing_table_and_a_wrong_connection_are_one_line_errors(
    postgres_url: str,
) -> None:
    consumer = Consumer(DRIVERS["psycopg-async"](postgres_url, "public"))
    consumer.inbox = PostgresInbox(schema="public", table="no_such_inbox")
    with pytest.raises(SchemaMissingError, match="outboxkit inbox migrate"):
        await consumer.run([event()])
    from sqlalchemy.orm import Session

    with pytest.raises(UnsupportedConnectionError) as caught:
        async with PostgresInbox().process(Session(), event()):
            pass
    assert "got sqlalchemy.orm.session.Session: for sync code use SyncPostgresInbox" in str(
        caught.value
    )
