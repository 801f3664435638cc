"""Writes to the embedded SQLite outbox as a service makes them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from outboxkit.embedded.sqlite.writer import SqliteOutbox
from outboxkit.message import Message

__all__ = ["commit_each"]


def commit_each(db: Path, messages: Sequence[Message]) -> None:
    """Commit ``messages`` to the migrated SQLite outbox ``db``, one transaction each."""
    outbox = SqliteOutbox()
    conn = sqlite3.connect(db)
    try:
        for message in messages:
            with conn:
                outbox.add(conn, message)
    finally:
        conn.close()
