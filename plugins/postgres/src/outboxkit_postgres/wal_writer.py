"""The WAL-only writer: messages as transactional logical decoding messages, no outbox row."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from outboxkit.errors import ConfigurationError, transaction_required
from outboxkit.message import DEFAULT_MAX_PAYLOAD_BYTES, Message, check_messages
from outboxkit_postgres.codec import encode_wal_messages
from outboxkit_postgres.names import OutboxNames
from outboxkit_postgres.writer import _validate

__all__ = ["PostgresWalOutbox"]

_EMIT = "SELECT pg_logical_emit_message(true, $1::text, $2::bytea)"


class PostgresWalOutbox:
    """Adds messages to a WAL-only outbox in the caller's transaction (``--pg-mode wal``).

    ::

        outbox = PostgresWalOutbox()
        async with conn.transaction():
            await conn.execute("INSERT INTO orders ...")
            await outbox.add(conn, Message.create(aggregate_type="order", ...))

    ``add_many`` emits one transactional logical decoding message (one round trip) carrying
    every message; it reaches the relay's replication slot iff the transaction commits, in
    commit order. No row, no lock and no NOTIFY: the write path costs one WAL record.
    ``schema`` and ``table`` name the outbox the relay serves (its dead-letter table and the
    message prefix ``outboxkit:<schema>.<table>``), so they must match the relay's settings.
    """

    def __init__(
        self,
        *,
        schema: str = "public",
        table: str = "outbox",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._names = OutboxNames(schema, table)
        self._prefix = self._names.wal_prefix
        self._max_payload_bytes = max_payload_bytes

    async def add(self, conn: asyncpg.Connection, message: Message) -> None:
        """Add one message; the relay sees it iff the transaction commits."""
        await self.add_many(conn, (message,))

    async def add_many(self, conn: asyncpg.Connection, messages: Sequence[Message]) -> None:
        """Add messages in one round trip, in order. Nothing is written if any is invalid."""
        check_messages(messages, self._max_payload_bytes)
        for message in messages:
            _validate(message)
        if not messages:
            return
        if not conn.is_in_transaction():
            raise transaction_required(
                "PostgresWalOutbox.add", "call it inside `async with conn.transaction():`"
            )
        try:
            await conn.execute(_EMIT, self._prefix, encode_wal_messages(messages))
        except asyncpg.ObjectNotInPrerequisiteStateError as exc:  # wal_level below logical
            raise ConfigurationError(
                f"the WAL-only outbox needs wal_level=logical ({exc}): set it in "
                "postgresql.conf and restart PostgreSQL (docs/log-tailing.md)"
            ) from None
