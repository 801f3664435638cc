"""The PostgreSQL inbox: idempotent consumers, on the connections the writers take.

::

    inbox = PostgresInbox(guard="skip")
    message = read_record(record)                 # outboxkit_kafka; or read_msg (NATS)
    async with inbox.process(conn, message) as fresh:
        if fresh:
            await conn.execute("UPDATE accounts SET ...", ...)
    await consumer.commit()

On an asyncpg connection, :meth:`PostgresInbox.process` opens a transaction (a savepoint
inside yours), records the message id in it and yields the :class:`~outboxkit.inbox.Verdict`;
your change commits with the id or rolls back with it. On the other connections
:class:`PostgresInbox` takes (an SQLAlchemy ``AsyncSession``/``AsyncConnection``, a psycopg
``AsyncConnection``) and on those of :class:`SyncPostgresInbox` (psycopg ``Connection``,
SQLAlchemy ``Session``/``Connection``, Django), the inbox uses *your* transaction: call it
inside ``async with session.begin():`` (or the driver's equivalent), else it raises
:class:`~outboxkit.errors.TransactionRequiredError`; the id commits or rolls back with that
transaction (let an exception from the block end it). :meth:`PostgresInbox.process_batch`
does the same for the messages of one poll in one transaction and one statement, yielding the
fresh ones.

Tables (``outboxkit inbox migrate --inbox pg``): ``<table>`` (id: the primary key; processed_at),
``<table>_aggregates`` (the guard's last sequence per aggregate), ``<table>_parked``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ClassVar

import asyncpg
import msgspec

from outboxkit.errors import ConfigurationError, SchemaMissingError, transaction_required
from outboxkit.inbox.contract import Guard, Verdict
from outboxkit.inbox.decoding import InboxMessage
from outboxkit.inbox.judging import AggregateKey, aggregate_keys, judge
from outboxkit_postgres.drivers import (
    AsyncTarget,
    Rows,
    Statement,
    Style,
    SyncTarget,
    async_target,
    error_chain,
    format_style,
    sync_target,
)
from outboxkit_postgres.names import OutboxNames

__all__ = ["PostgresInbox", "SyncPostgresInbox"]

_GUARDS = ("off", "skip", "park")
_UNDEFINED_TABLE = "42P01"

Step = tuple[str, tuple[Any, ...]]
"""One statement of a recording (``$n`` placeholders) and its arguments."""


def _is_asyncpg(conn: Any) -> bool:
    """An asyncpg connection, on which the inbox opens its transaction itself."""
    return isinstance(conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy)


class _Inbox:
    """What both inboxes share: names, statements, and the recording as a sequence of
    statements (:meth:`_steps`) that each driver runs its own way."""

    _name: ClassVar[str]
    _other: ClassVar[str]

    def __init__(self, *, schema: str = "public", table: str = "inbox", guard: Guard = "off"):
        if guard not in _GUARDS:
            raise ConfigurationError(f"guard must be one of {', '.join(_GUARDS)}, got {guard!r}")
        self.names = OutboxNames(schema, table)
        """The validated schema and table names."""
        self.guard: Guard = guard
        """The per-aggregate guard: off, skip or park."""
        n = self.names
        self._insert_ids = n.render(
            "INSERT INTO {{schema}}.{{table}} (id) SELECT unnest($1::uuid[]) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        self._begin_insert = n.render(
            "BEGIN; INSERT INTO {{schema}}.{{table}} (id) VALUES ($1) ON CONFLICT (id) DO NOTHING"
        )
        # Lock the aggregates' rows (creating missing ones) and read their last sequence.
        self._lock_aggregates = n.render(
            "INSERT INTO {{schema}}.{{table}}_aggregates AS a "
            "(aggregate_type, aggregate_id, last_sequence) "
            "SELECT t, i, 0 FROM unnest($1::text[], $2::text[]) AS k(t, i) "
            "ORDER BY t, i "
            "ON CONFLICT (aggregate_type, aggregate_id) "
            "DO UPDATE SET last_sequence = a.last_sequence "
            "RETURNING aggregate_type, aggregate_id, last_sequence"
        )
        self._set_last = n.render(
            "UPDATE {{schema}}.{{table}}_aggregates AS a SET last_sequence = v.s "
            "FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(t, i, s) "
            "WHERE a.aggregate_type = v.t AND a.aggregate_id = v.i"
        )
        self._park = n.render(
            "INSERT INTO {{schema}}.{{table}}_parked (id, aggregate_type, aggregate_id, "
            "event_type, sequence, last_sequence, topic, headers, payload, content_type) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], "
            "$5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::bytea[], $10::text[]) "
            "ON CONFLICT (id) DO NOTHING"
        )
        self._format = {
            sql: format_style(sql)
            for sql in (self._insert_ids, self._lock_aggregates, self._set_last, self._park)
        }

    # -- the recording, driver-free -------------------------------------------------------
    def _steps(self, messages: Sequence[InboxMessage]) -> Generator[Step, Rows, list[Verdict]]:
        """Yields each statement to run, is sent its rows; returns the verdicts."""
        rows = yield self._insert_ids, ([m.id for m in messages],)
        new_ids = {row[0] for row in rows}
        last: dict[AggregateKey, int] = {}
        keys = aggregate_keys(messages, new_ids) if self.guard != "off" else set()
        if keys:
            ordered = sorted(keys)
            locked = yield self._lock_aggregates, ([k[0] for k in ordered], [k[1] for k in ordered])
            last = {(r[0], r[1]): r[2] for r in locked}
        judgement = judge(messages, new_ids, last, self.guard)
        if judgement.last:
            items = sorted(judgement.last.items())
            yield (
                self._set_last,
                ([k[0] for k, _ in items], [k[1] for k, _ in items], [s for _, s in items]),
            )
        parked = judgement.parked(messages)
        if parked:
            columns: list[list[Any]] = [[] for _ in range(10)]
            for m in parked:
                row = (
                    m.id,
                    m.aggregate_type,
                    m.aggregate_id,
                    m.event_type,
                    m.sequence,
                    judgement.behind.get(m.id),
                    m.message.topic,
                    msgspec.json.encode(m.message.headers).decode(),
                    m.message.payload,
                    m.message.content_type,
                )
                for column, value in zip(columns, row, strict=True):
                    column.append(value)
            yield self._park, tuple(columns)
        return judgement.verdicts

    def _statement(self, step: Step) -> Statement:
        sql, args = step

        def in_style(style: Style) -> tuple[str, tuple[Any, ...]]:
            if style == "dollar":
                return sql, args
            formatted, order = self._format[sql]
            return formatted, tuple(args[i] for i in order)

        return in_style

    def _missing(self) -> SchemaMissingError:
        return SchemaMissingError(
            f"inbox table {self.names.qualified} does not exist: run `outboxkit inbox migrate "
            f"--inbox pg --pg-inbox-schema {self.names.schema} --pg-inbox-table "
            f"{self.names.table}`"
        )

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        """A missing table (found through SQLAlchemy's and Django's wrappers) as
        :class:`SchemaMissingError`."""
        try:
            yield
        except Exception as exc:
            for cause in error_chain(exc):
                state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
                if state == _UNDEFINED_TABLE:
                    raise self._missing() from None
            raise

    def _in_transaction(self, target: AsyncTarget | SyncTarget, method: str) -> None:
        if not target.in_transaction:
            raise transaction_required(f"{self._name}.{method}", f"call it inside {target.how}")


class PostgresInbox(_Inbox):
    """Records processed message ids in ``<schema>.<table>`` (see the module docs), on an
    asyncpg ``Connection`` (or pool connection), an SQLAlchemy ``AsyncSession`` or
    ``AsyncConnection`` (asyncpg or psycopg driver), or a psycopg ``AsyncConnection``."""

    _name = "PostgresInbox"
    _other = "SyncPostgresInbox"

    # -- the consumer's API ---------------------------------------------------------------
    @asynccontextmanager
    async def process(self, conn: Any, message: InboxMessage) -> AsyncIterator[Verdict]:
        """Records ``message``; yields its verdict, true only if it is fresh. Apply your
        change in the block, on ``conn``, only if fresh: both commit together, or neither
        (an exception in the block rolls back). On asyncpg this is a transaction (a
        savepoint inside yours); on the other drivers it must run inside your transaction
        (:class:`~outboxkit.errors.TransactionRequiredError` otherwise)."""
        target = self._target(conn)
        if not _is_asyncpg(conn):
            self._in_transaction(target, "process")
            yield (await self._record(target, [message]))[0]
            return
        if self.guard != "off" or target.in_transaction:
            async with conn.transaction():
                verdicts = await self._record(target, [message])
                yield verdicts[0]
            return
        # The common case in one round trip less: BEGIN and the id's INSERT in one simple-
        # protocol script (a UUID's text is hex and dashes only), its status says if it was new.
        try:
            status = await conn.execute(self._begin_insert.replace("$1", f"'{message.id}'"))
        except asyncpg.UndefinedTableError:
            await conn.execute("ROLLBACK")
            raise self._missing() from None
        except BaseException:
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            raise
        try:
            yield Verdict.FRESH if status.endswith(" 1") else Verdict.DUPLICATE
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    @asynccontextmanager
    async def process_batch(
        self, conn: Any, messages: Sequence[InboxMessage]
    ) -> AsyncIterator[list[InboxMessage]]:
        """One transaction for a batch (e.g. one poll): yields the fresh messages, in order.
        Apply them all in the block; they commit with their ids, or nothing does. As
        :meth:`process`: asyncpg opens the transaction, the other drivers use yours."""
        target = self._target(conn)
        if not _is_asyncpg(conn):
            self._in_transaction(target, "process_batch")
            verdicts = await self._record(target, messages)
            yield [m for m, v in zip(messages, verdicts, strict=True) if v is Verdict.FRESH]
            return
        async with conn.transaction():
            verdicts = await self._record(target, messages)
            yield [m for m, v in zip(messages, verdicts, strict=True) if v is Verdict.FRESH]

    async def record(self, conn: Any, messages: Sequence[InboxMessage]) -> list[Verdict]:
        """Record ``messages`` in the transaction already open on ``conn``; their verdicts.
        For callers that manage the transaction themselves."""
        target = self._target(conn)
        self._in_transaction(target, "record")
        return await self._record(target, messages)

    # -- internals ------------------------------------------------------------------------
    def _target(self, conn: Any) -> AsyncTarget:
        return async_target(conn, self._name, self._other)

    async def _record(self, target: AsyncTarget, messages: Sequence[InboxMessage]) -> list[Verdict]:
        if not messages:
            return []
        steps = self._steps(messages)
        with self._database_errors():
            try:
                step = next(steps)
                while True:
                    step = steps.send(await target.run(self._statement(step)))
            except StopIteration as done:
                verdicts: list[Verdict] = done.value
                return verdicts


class SyncPostgresInbox(_Inbox):
    """:class:`PostgresInbox` for sync code: a psycopg ``Connection``, an SQLAlchemy
    ``Session`` or ``Connection`` (psycopg driver), or a Django database connection, always
    inside your transaction (``with conn.transaction():``, ``with session.begin():``,
    ``with transaction.atomic():``)::

        with transaction.atomic():
            with inbox.process(connection, message) as fresh:
                if fresh:
                    Account.objects.filter(...).update(...)
    """

    _name = "SyncPostgresInbox"
    _other = "PostgresInbox"

    @contextmanager
    def process(self, conn: Any, message: InboxMessage) -> Iterator[Verdict]:
        """Records ``message`` in your transaction; yields its verdict (see
        :meth:`PostgresInbox.process`)."""
        yield self.record(conn, [message])[0]

    @contextmanager
    def process_batch(
        self, conn: Any, messages: Sequence[InboxMessage]
    ) -> Iterator[list[InboxMessage]]:
        """Records ``messages`` in your transaction; yields the fresh ones, in order."""
        verdicts = self.record(conn, messages)
        yield [m for m, v in zip(messages, verdicts, strict=True) if v is Verdict.FRESH]

    def record(self, conn: Any, messages: Sequence[InboxMessage]) -> list[Verdict]:
        """Record ``messages`` in the transaction open on ``conn``; their verdicts."""
        target = sync_target(conn, self._name, self._other)
        self._in_transaction(target, "record")
        if not messages:
            return []
        steps = self._steps(messages)
        with self._database_errors():
            try:
                step = next(steps)
                while True:
                    step = steps.send(target.run(self._statement(step)))
            except StopIteration as done:
                verdicts: list[Verdict] = done.value
                return verdicts
