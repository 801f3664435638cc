"""The embedded SQLite store: :class:`SqliteStore` for the relay, :class:`SqliteOutbox` to write.

* :mod:`~outboxkit.embedded.sqlite.store`: the store the relay uses;
* :mod:`~outboxkit.embedded.sqlite.writer`: the writer a service calls in its transaction;
* :mod:`~outboxkit.embedded.sqlite.db`: connections, tables and the schema (``schema.sql``,
  then ``schema_2.sql``);
* :mod:`~outboxkit.embedded.sqlite.leasing` and :mod:`~outboxkit.embedded.sqlite.messages`:
  the store's SQL for leases and for messages;
* :mod:`~outboxkit.embedded.sqlite.codec`: rows to messages and back.
"""

from __future__ import annotations

from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.embedded.sqlite.writer import SqliteOutbox

__all__ = ["SqliteOutbox", "SqliteSettings", "SqliteStore"]
