"""Conversion between messages and the columns of the outbox tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from outboxkit.message import Message
from outboxkit.protocols import DeadLetter, Envelope
from outboxkit.sharding import aggregate_hash

__all__ = ["dead_letter_from_row", "envelope_from_row", "writer_arguments"]

_headers_decoder = msgspec.json.Decoder(dict[str, str])


def writer_arguments(messages: Sequence[Message], notify: bool) -> tuple[Any, ...]:
    """The column arrays passed to the ``<table>_add`` function, in message order."""
    return (
        [aggregate_hash(m.aggregate_id) for m in messages],
        [m.id for m in messages],
        [m.aggregate_type for m in messages],
        [m.aggregate_id for m in messages],
        [m.event_type for m in messages],
        [m.topic for m in messages],
        [m.key for m in messages],
        [msgspec.json.encode(m.headers).decode() for m in messages],
        [m.payload for m in messages],
        [m.content_type for m in messages],
        [m.created_at for m in messages],
        notify,
    )


def _message(row: Mapping[str, Any]) -> Message:
    return Message(
        id=row["id"],
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        event_type=row["event_type"],
        topic=row["topic"],
        key=row["key"],
        headers=_headers_decoder.decode(row["headers"]),
        payload=bytes(row["payload"]),
        content_type=row["content_type"],
        created_at=row["created_at"],
    )


def envelope_from_row(row: Mapping[str, Any], shard: int) -> Envelope:
    """An envelope from a claim row."""
    return Envelope(
        message=_message(row), shard=shard, position=row["seq"], attempts=row["attempts"]
    )


def dead_letter_from_row(row: Mapping[str, Any]) -> DeadLetter:
    """A dead letter from a row of the dead-letter table."""
    return DeadLetter(
        message=_message(row),
        shard=row["shard"],
        error=row["error"],
        attempts=row["attempts"],
        failed_at=row["failed_at"],
    )
