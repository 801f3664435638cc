"""The WAL-only writers: messages as transactional logical decoding messages, no outbox row.

:class:`PostgresWalOutbox` takes the connections of async code, :class:`SyncPostgresWalOutbox`
those of sync code: the same objects, configuration and checks as the table writers
(:mod:`outboxkit_postgres.writer`), through the same dispatch (:mod:`outboxkit_postgres.drivers`);
only the statement differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from outboxkit.errors import ConfigurationError, OutboxError
from outboxkit.message import Message
from outboxkit_postgres.codec import encode_wal_messages
from outboxkit_postgres.drivers import Statement, Style, error_chain, format_style
from outboxkit_postgres.writer import _in_styles, _Plan, _Writer, sqlstate

__all__ = ["PostgresWalOutbox", "SyncPostgresWalOutbox"]

_EMIT = "SELECT pg_logical_emit_message(true, $1::text, $2::bytea)"
_EMIT_IN: dict[Style, tuple[str, tuple[int, ...] | None]] = {
    "dollar": (_EMIT, None),
    "format": format_style(_EMIT),
}
_NOT_LOGICAL = "55000"  # object_not_in_prerequisite_state: wal_level below logical


class _WalWriter(_Writer):
    """What both WAL-only writers share: the emitted message and the wal_level error."""

    _mode = "wal"

    def __init__(
        self,
        *,
        schema: str | None = None,
        table: str | None = None,
        max_payload_bytes: int | None = None,
        read_config: bool = True,
    ) -> None:
        super().__init__(
            schema=schema, table=table, max_payload_bytes=max_payload_bytes, read_config=read_config
        )

    def _statement(self, plan: _Plan, messages: Sequence[Message]) -> Statement:
        return _in_styles(
            _EMIT_IN.__getitem__, (plan.names.wal_prefix, encode_wal_messages(messages))
        )

    def _error(self, plan: _Plan, exc: BaseException) -> OutboxError | None:
        for cause in error_chain(exc):
            if sqlstate(cause) == _NOT_LOGICAL:
                return ConfigurationError(
                    f"the WAL-only outbox needs wal_level=logical ({cause}): set it in "
                    "postgresql.conf and restart PostgreSQL (docs/log-tailing.md)"
                )
        return None


class PostgresWalOutbox(_WalWriter):
    """Adds messages to a WAL-only outbox in the caller's transaction (``mode = "wal"``,
    async code).

    ``conn`` is any object :class:`~outboxkit_postgres.PostgresOutbox` takes: an asyncpg
    ``Connection`` (or pool connection), an SQLAlchemy ``AsyncSession`` or ``AsyncConnection``
    (asyncpg or psycopg driver), or a psycopg ``AsyncConnection``::

        outbox = PostgresWalOutbox()
        async with conn.transaction():
            await conn.execute("INSERT INTO orders ...")
            await outbox.add(conn, Message.create(aggregate_type="order", ...))

    ``add_many`` emits one transactional logical decoding message (one round trip) carrying
    every message; it reaches the relay's replication slot iff the transaction commits, in
    commit order. No row, no lock and no NOTIFY: the write path costs one WAL record.
    ``schema`` and ``table`` name the outbox the relay serves (its dead-letter table and the
    message prefix ``outboxkit:<schema>.<table>``). Options left out are read where the relay
    reads them, as for :class:`~outboxkit_postgres.PostgresOutbox`; a configured
    ``mode = "table"`` is a :class:`~outboxkit.errors.ConfigurationError` at the first add.
    """

    _name = "PostgresWalOutbox"
    _other = "SyncPostgresWalOutbox"
    _of_other_mode = "PostgresOutbox"

    async def add(self, conn: Any, message: Message) -> None:
        """Add one message; the relay sees it iff the transaction commits."""
        await self.add_many(conn, (message,))

    async def add_many(self, conn: Any, messages: Sequence[Message]) -> None:
        """Add messages in one round trip, in order. Nothing is written if any is invalid.

        Raises :class:`~outboxkit.errors.InvalidMessageError` (bad message),
        :class:`~outboxkit.errors.TransactionRequiredError` (no transaction open),
        :class:`~outboxkit.errors.ConfigurationError` (``wal_level`` is not ``logical``) or
        :class:`~outboxkit_postgres.UnsupportedConnectionError` (``conn`` is none of the
        accepted kinds).
        """
        await self._add_async(conn, messages)


class SyncPostgresWalOutbox(_WalWriter):
    """Adds messages to a WAL-only outbox in the caller's transaction (sync code).

    ``conn`` is any object :class:`~outboxkit_postgres.SyncPostgresOutbox` takes: a psycopg
    ``Connection``, an SQLAlchemy ``Session`` or ``Connection`` (psycopg driver), or a Django
    database connection inside ``transaction.atomic()``. Options, configuration and
    guarantees as :class:`PostgresWalOutbox`.
    """

    _name = "SyncPostgresWalOutbox"
    _other = "PostgresWalOutbox"
    _of_other_mode = "SyncPostgresOutbox"

    def add(self, conn: Any, message: Message) -> None:
        """Add one message; the relay sees it iff the transaction commits."""
        self.add_many(conn, (message,))

    def add_many(self, conn: Any, messages: Sequence[Message]) -> None:
        """Add messages in one round trip, in order. Nothing is written if any is invalid.

        Raises the errors :meth:`PostgresWalOutbox.add_many` lists.
        """
        self._add_sync(conn, messages)
