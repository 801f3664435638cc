"""The PostgreSQL inbox: idempotent consumers with asyncpg.

::

    inbox = PostgresInbox(guard="skip")
    message = read_record(record)                 # outboxkit_kafka; or read_msg (NATS)
    async with inbox.process(conn, message) as fresh:
        if fresh:
            await conn.execute("UPDATE accounts SET ...", ...)
    await consumer.commit()

:meth:`PostgresInbox.process` opens a transaction (a savepoint inside yours), records the
message id in it and yields the :class:`~outboxkit.inbox.Verdict`; your change commits with
the id or rolls back with it. :meth:`PostgresInbox.process_batch` does the same for the
messages of one poll in one transaction and one statement, yielding the fresh ones.

Tables (``outboxkit inbox migrate --inbox pg``): ``<table>`` (id: the primary key; processed_at),
``<table>_aggregates`` (the guard's last sequence per aggregate), ``<table>_parked``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from outboxkit.errors import ConfigurationError, SchemaMissingError
from outboxkit.inbox.contract import Guard, Verdict
from outboxkit.inbox.decoding import InboxMessage
from outboxkit.inbox.judging import AggregateKey, Judgement, aggregate_keys, judge
from outboxkit_postgres.names import OutboxNames

__all__ = ["PostgresInbox"]

_GUARDS = ("off", "skip", "park")


class PostgresInbox:
    """Records processed message ids in ``<schema>.<table>`` (see the module docs)."""

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

    # -- the consumer's API ---------------------------------------------------------------
    @asynccontextmanager
    async def process(
        self, conn: asyncpg.Connection, message: InboxMessage
    ) -> AsyncIterator[Verdict]:
        """A transaction (savepoint) that records ``message``; yields its verdict, true only
        if it is fresh. Apply your change in the block, on ``conn``, only if fresh: both
        commit together, or neither (an exception in the block rolls back)."""
        if self.guard != "off" or conn.is_in_transaction():
            async with conn.transaction():
                verdicts = await self._record(conn, [message])
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
        self, conn: asyncpg.Connection, messages: Sequence[InboxMessage]
    ) -> AsyncIterator[list[InboxMessage]]:
        """One transaction for a batch (e.g. one poll): yields the fresh messages, in order.
        Apply them all in the block; they commit with their ids, or nothing does."""
        async with conn.transaction():
            verdicts = await self._record(conn, messages)
            yield [m for m, v in zip(messages, verdicts, strict=True) if v is Verdict.FRESH]

    async def record(
        self, conn: asyncpg.Connection, messages: Sequence[InboxMessage]
    ) -> list[Verdict]:
        """Record ``messages`` in the transaction already open on ``conn``; their verdicts.
        For callers that manage the transaction themselves."""
        if not conn.is_in_transaction():
            raise ConfigurationError(
                "PostgresInbox.record needs an open transaction on the connection (the ids "
                "must commit with your change): use inbox.process(conn, message) instead"
            )
        return await self._record(conn, messages)

    # -- internals ------------------------------------------------------------------------
    async def _record(
        self, conn: asyncpg.Connection, messages: Sequence[InboxMessage]
    ) -> list[Verdict]:
        if not messages:
            return []
        try:
            rows = await conn.fetch(self._insert_ids, [m.id for m in messages])
        except asyncpg.UndefinedTableError:
            raise self._missing() from None
        new_ids = {row["id"] for row in rows}
        last: dict[AggregateKey, int] = {}
        keys = aggregate_keys(messages, new_ids) if self.guard != "off" else set()
        if keys:
            ordered = sorted(keys)
            locked = await conn.fetch(
                self._lock_aggregates, [k[0] for k in ordered], [k[1] for k in ordered]
            )
            last = {(r["aggregate_type"], r["aggregate_id"]): r["last_sequence"] for r in locked}
        judgement = judge(messages, new_ids, last, self.guard)
        if judgement.last:
            await self._write_last(conn, judgement)
        parked = judgement.parked(messages)
        if parked:
            await self._write_parked(conn, parked, judgement.behind)
        return judgement.verdicts

    def _missing(self) -> SchemaMissingError:
        return SchemaMissingError(
            f"inbox table {self.names.qualified} does not exist: run `outboxkit inbox migrate "
            f"--inbox pg --pg-inbox-schema {self.names.schema} --pg-inbox-table "
            f"{self.names.table}`"
        )

    async def _write_last(self, conn: asyncpg.Connection, judgement: Judgement) -> None:
        items = sorted(judgement.last.items())
        await conn.execute(
            self._set_last,
            [k[0] for k, _ in items],
            [k[1] for k, _ in items],
            [s for _, s in items],
        )

    async def _write_parked(
        self,
        conn: asyncpg.Connection,
        parked: Sequence[InboxMessage],
        behind: dict[UUID, int],
    ) -> None:
        columns: list[list[Any]] = [[] for _ in range(10)]
        for m in parked:
            row = (
                m.id,
                m.aggregate_type,
                m.aggregate_id,
                m.event_type,
                m.sequence,
                behind.get(m.id),
                m.message.topic,
                msgspec.json.encode(m.message.headers).decode(),
                m.message.payload,
                m.message.content_type,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        await conn.execute(self._park, *columns)
