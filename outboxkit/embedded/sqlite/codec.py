"""Message <-> SQLite row conversion shared by the writer and the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from outboxkit.message import Message

__all__ = ["MESSAGE_COLUMNS", "MESSAGE_COLUMN_DEFS", "message_from_row", "message_row"]

MESSAGE_COLUMNS = (
    "id, aggregate_type, aggregate_id, event_type, topic, key, headers, payload, "
    "content_type, created_at"
)
"""The columns holding a message, in the order of :func:`message_row`."""

MESSAGE_COLUMN_DEFS = (
    "id TEXT NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, "
    "event_type TEXT NOT NULL, topic TEXT, key TEXT, headers TEXT NOT NULL, "
    "payload BLOB NOT NULL, content_type TEXT NOT NULL, created_at TEXT NOT NULL"
)
"""Their DDL (``headers``: a JSON object; ``created_at``: ISO 8601 with offset)."""


def message_row(message: Message) -> tuple[Any, ...]:
    """The values of :data:`MESSAGE_COLUMNS` for ``message``."""
    return (
        str(message.id),
        message.aggregate_type,
        message.aggregate_id,
        message.event_type,
        message.topic,
        message.key,
        msgspec.json.encode(message.headers).decode(),
        message.payload,
        message.content_type,
        message.created_at.isoformat(),
    )


def message_from_row(row: Sequence[Any]) -> Message:
    """The message stored in the first ``len(MESSAGE_COLUMNS)`` values of ``row``."""
    return Message(
        id=UUID(row[0]),
        aggregate_type=row[1],
        aggregate_id=row[2],
        event_type=row[3],
        topic=row[4],
        key=row[5],
        headers=msgspec.json.decode(row[6], type=dict[str, str]),
        payload=bytes(row[7]),
        content_type=row[8],
        created_at=datetime.fromisoformat(row[9]),
    )
