"""Embedded defaults that need no server: a SQLite store and a stdout publisher.

* store ``sqlite``: :class:`SqliteStore` (relay side) and :class:`SqliteOutbox` (the writer a
  service calls inside its own ``sqlite3`` transaction), configured by :class:`SqliteSettings`;
* publisher ``stdout``: :class:`StdoutPublisher`, JSON lines on standard output or in a file,
  configured by :class:`StdoutSettings`.
"""

from __future__ import annotations

from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.embedded.sqlite.writer import SqliteOutbox
from outboxkit.embedded.stdout.publisher import StdoutPublisher
from outboxkit.embedded.stdout.records import JsonLine, decode_line
from outboxkit.embedded.stdout.settings import StdoutSettings

__all__ = [
    "JsonLine",
    "SqliteOutbox",
    "SqliteSettings",
    "SqliteStore",
    "StdoutPublisher",
    "StdoutSettings",
    "decode_line",
]
