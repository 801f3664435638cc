"""The service-side writer of the embedded SQLite outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from outboxkit.embedded.sqlite.codec import MESSAGE_COLUMNS, message_row
from outboxkit.embedded.sqlite.db import NOW, Tables, read_shard_count
from outboxkit.errors import transaction_required
from outboxkit.message import DEFAULT_MAX_PAYLOAD_BYTES, Message, check_messages
from outboxkit.sharding import shard_of

__all__ = ["SqliteOutbox"]


class SqliteOutbox:
    """Adds messages to the SQLite outbox inside the caller's transaction.

    ::

        outbox = SqliteOutbox()
        with conn:  # sqlite3 commits on success, rolls back on error
            conn.execute("UPDATE orders SET state = 'paid' WHERE id = ?", (order_id,))
            outbox.add(conn, Message.create(aggregate_type="order", aggregate_id=order_id,
                                            event_type="order.paid", payload={"id": order_id}))

    Messages are validated first, so invalid input raises and writes nothing. The caller's
    commit or rollback decides whether the messages exist.
    """

    def __init__(
        self, table: str = "outbox", *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        self._tables = Tables(table)
        self._max_payload_bytes = max_payload_bytes
        self._insert = (
            f"INSERT INTO {self._tables.outbox} (shard, {MESSAGE_COLUMNS}, enqueued_at, "
            f"available_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW}, {NOW})"
        )

    def add(self, conn: sqlite3.Connection, message: Message) -> None:
        """Add one message in ``conn``'s current transaction."""
        self.add_many(conn, [message])

    def add_many(self, conn: sqlite3.Connection, messages: Sequence[Message]) -> None:
        """Add ``messages`` in order, in ``conn``'s current transaction, in one statement."""
        check_messages(messages, self._max_payload_bytes)
        if not messages:
            return
        if conn.isolation_level is None and not conn.in_transaction:
            raise transaction_required(
                "SqliteOutbox.add", "the connection is in autocommit mode: run BEGIN first"
            )
        shard_count = read_shard_count(conn, self._tables)
        conn.executemany(
            self._insert,
            [(shard_of(m.aggregate_id, shard_count), *message_row(m)) for m in messages],
        )
