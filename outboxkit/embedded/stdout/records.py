"""The JSON-lines format of the stdout publisher, for writing and for reading back."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

import msgspec

from outboxkit.message import Message, broker_headers, route

__all__ = ["JsonLine", "decode_line", "encode_line", "payload_bytes"]


class JsonLine(msgspec.Struct, kw_only=True, frozen=True):
    """One published message. ``payload`` is the JSON value itself when
    ``payload_encoding`` is ``"json"``, else a base64 string of the bytes."""

    id: str
    """The message id."""
    destination: str
    """The topic the message was published to."""
    key: str
    """The partition key."""
    aggregate_type: str
    """``Message.aggregate_type``."""
    aggregate_id: str
    """``Message.aggregate_id``."""
    event_type: str
    """``Message.event_type``."""
    headers: dict[str, str]
    """The message's headers."""
    content_type: str
    """``Message.content_type``."""
    payload_encoding: Literal["json", "base64"]
    """How ``payload`` is written."""
    payload: msgspec.Raw
    """The JSON value itself, or a base64 string of the bytes."""
    created_at: datetime
    """``Message.created_at``."""


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _payload(message: Message) -> tuple[Literal["json", "base64"], msgspec.Raw]:
    if _is_json(message.content_type):
        try:
            value = msgspec.json.decode(message.payload)
        except msgspec.DecodeError:
            pass  # mislabelled payload: fall back to base64
        else:
            if b"\n" in message.payload or b"\r" in message.payload:
                return "json", msgspec.Raw(msgspec.json.encode(value))  # keep one line
            return "json", msgspec.Raw(message.payload)
    encoded = base64.b64encode(message.payload).decode("ascii")
    return "base64", msgspec.Raw(msgspec.json.encode(encoded))


def encode_line(message: Message, template: str) -> bytes:
    """``message`` as one JSON line (with the trailing newline), routed by ``template``."""
    encoding, payload = _payload(message)
    line = JsonLine(
        id=str(message.id),
        destination=route(message, template),
        key=message.partition_key,
        aggregate_type=message.aggregate_type,
        aggregate_id=message.aggregate_id,
        event_type=message.event_type,
        headers=dict(broker_headers(message)),
        content_type=message.content_type,
        payload_encoding=encoding,
        payload=payload,
        created_at=message.created_at,
    )
    return msgspec.json.encode(line) + b"\n"


def decode_line(line: bytes | str) -> JsonLine:
    """Parse one line written by :func:`encode_line`."""
    return msgspec.json.decode(line, type=JsonLine)


def payload_bytes(line: JsonLine) -> bytes:
    """The payload bytes of a decoded line (exact unless a multi-line JSON was compacted)."""
    if line.payload_encoding == "json":
        return bytes(line.payload)
    return base64.b64decode(msgspec.json.decode(line.payload, type=str))
