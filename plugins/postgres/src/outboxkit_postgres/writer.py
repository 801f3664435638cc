"""The writer API: add messages inside the caller's asyncpg transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from outboxkit.errors import InvalidMessageError, SchemaMissingError, transaction_required
from outboxkit.message import DEFAULT_MAX_PAYLOAD_BYTES, Message, check_messages
from outboxkit_postgres.codec import writer_arguments
from outboxkit_postgres.names import OutboxNames, query_texts
from outboxkit_postgres.privileges import writer_denied

__all__ = ["PostgresOutbox"]


_TEXT_FIELDS = ("aggregate_type", "aggregate_id", "event_type", "topic", "key", "content_type")


def _validate(message: Message) -> None:
    """Raise :class:`InvalidMessageError` for anything else the insert would fail on."""
    texts = [getattr(message, name) or "" for name in _TEXT_FIELDS]
    texts += [text for pair in message.headers.items() for text in pair]
    if any("\x00" in text for text in texts):
        raise InvalidMessageError(
            f"message {message.id} of aggregate {message.aggregate_id!r} has a NUL character "
            "in a text field or header, which PostgreSQL cannot store: remove it"
        )
    if message.created_at.tzinfo is None:
        raise InvalidMessageError(f"message {message.id}: created_at must be timezone-aware")


class PostgresOutbox:
    """Adds messages to the outbox table in the caller's transaction.

    ::

        outbox = PostgresOutbox()
        async with conn.transaction():
            await conn.execute("INSERT INTO orders ...")
            await outbox.add(conn, Message.create(aggregate_type="order", ...))

    Writers of one aggregate are serialised by a transaction-scoped advisory lock on the
    aggregate's hash, so for one aggregate the sequence order equals the commit order.
    """

    def __init__(
        self,
        *,
        schema: str = "public",
        table: str = "outbox",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        notify: bool = True,
    ) -> None:
        self._names = OutboxNames(schema, table)
        self._sql = self._names.render(query_texts()["add"])
        self._sql_one = self._names.render(query_texts()["add_one"])
        self._max_payload_bytes = max_payload_bytes
        self._notify = notify

    async def add(self, conn: asyncpg.Connection, message: Message) -> None:
        """Add one message; it becomes visible to the relay iff the transaction commits."""
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
                "PostgresOutbox.add", "call it inside `async with conn.transaction():`"
            )
        try:
            sql = self._sql_one if len(messages) == 1 else self._sql
            await conn.execute(sql, *writer_arguments(messages, self._notify))
        except (
            asyncpg.UndefinedTableError,
            asyncpg.UndefinedFunctionError,
            asyncpg.InvalidSchemaNameError,
        ) as exc:
            raise SchemaMissingError(
                f"outbox {self._names.qualified} does not exist: run `outboxkit migrate --store pg`"
            ) from exc
        except asyncpg.InsufficientPrivilegeError as exc:
            raise writer_denied(exc, self._names) from None
