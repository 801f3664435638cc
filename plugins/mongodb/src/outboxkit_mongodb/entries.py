"""Outbox entries (messages as embedded subdocuments) and envelope refs.

An entry is written once and never modified (retry state lives in ``<f>_retry`` on the
document), so acks can remove exactly the published entries with ``$pullAll`` of their stored
values: this works on every MongoDB-wire server, including FerretDB 1.x whose ``$pull`` ignores
conditions on subdocuments.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from outboxkit.message import Message

__all__ = ["decode_entry", "encode_entry", "make_ref", "parse_ref"]


def encode_entry(message: Message) -> dict[str, Any]:
    """The subdocument stored in the outbox array (readable fields, payload as binary)."""
    return {
        "id": str(message.id),
        "aggregate_type": message.aggregate_type,
        "aggregate_id": message.aggregate_id,
        "event_type": message.event_type,
        "topic": message.topic,
        "key": message.key,
        "headers": dict(message.headers),
        "content_type": message.content_type,
        "created_at": message.created_at,
        "payload": message.payload,
    }


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (BSON dates are UTC; decoders may drop the zone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def decode_entry(raw: Mapping[str, Any]) -> Message:
    """The message stored in an outbox entry."""
    return Message(
        id=UUID(raw["id"]),
        aggregate_type=raw["aggregate_type"],
        aggregate_id=raw["aggregate_id"],
        event_type=raw["event_type"],
        topic=raw.get("topic"),
        key=raw.get("key"),
        headers=dict(raw.get("headers") or {}),
        content_type=raw.get("content_type", "application/json"),
        created_at=as_utc(raw["created_at"]),
        payload=bytes(raw.get("payload") or b""),
    )


def make_ref(collection: str, doc_id: Any) -> str:
    """An envelope ref locating a document: canonical extended JSON of (collection, _id)."""
    return str(json_util.dumps([collection, doc_id], json_options=CANONICAL_JSON_OPTIONS))


def parse_ref(ref: str | int | None) -> tuple[str, Any]:
    """The (collection, _id) of a ref made by :func:`make_ref`."""
    if not isinstance(ref, str):
        raise ValueError(f"not a mongodb envelope ref: {ref!r}")
    collection, doc_id = json_util.loads(ref, json_options=CANONICAL_JSON_OPTIONS)
    return str(collection), doc_id
