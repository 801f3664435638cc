"""Reading a message outboxkit published, from its broker headers and payload bytes.

Every publisher sends :func:`outboxkit.message.broker_headers` (id, aggregate type and id,
event type, the sequence within the aggregate when the store keeps one) plus the content type;
:func:`decode` turns them back into a typed :class:`InboxMessage`. The broker-specific
readers (``outboxkit_kafka.read_record``, ``outboxkit_nats.read_msg``) only pick the headers
and bytes out of their client's record and call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from outboxkit.errors import OutboxError
from outboxkit.message import (
    HEADER_AGGREGATE_ID,
    HEADER_AGGREGATE_TYPE,
    HEADER_EVENT_TYPE,
    HEADER_ID,
    HEADER_SEQUENCE,
    Message,
)

__all__ = [
    "CONTENT_TYPE_HEADERS",
    "InboxMessage",
    "UnreadableMessageError",
    "decode",
    "record_origin",
]

T = TypeVar("T")

CONTENT_TYPE_HEADERS = ("content-type", "Content-Type")
"""Where the publishers put the content type (Kafka: lower case; NATS: capitalised)."""

_REQUIRED = (HEADER_ID, HEADER_AGGREGATE_TYPE, HEADER_AGGREGATE_ID, HEADER_EVENT_TYPE)

Headers = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]
"""A record's headers: a mapping (nats-py, FastStream) or (name, value) pairs (aiokafka)."""


class UnreadableMessageError(OutboxError, ValueError):
    """A record is not an outboxkit message (no outboxkit headers, or malformed ones), or its
    payload cannot be decoded by its content type. Nothing was applied: route the record to
    your error handling (a dead-letter topic, a log) and do not retry it."""


class InboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """An outboxkit message as a consumer received it.

    ``message`` is the typed :class:`~outboxkit.message.Message` (its ``created_at`` is the
    time in its UUIDv7 id, to the millisecond); ``sequence`` its number within its aggregate
    (None if the writing store keeps none); ``data`` the payload decoded by its content type
    (JSON: Python objects; ``text/*``: str; else the bytes); ``source`` says where it came
    from (topic, partition, offset), for errors and logs.
    """

    message: Message
    """The typed message (payload bytes, headers, topic, key)."""
    sequence: int | None
    """Its number within its aggregate (the ``outboxkit-sequence`` header), or None."""
    data: Any
    """The payload decoded by its content type."""
    source: str = ""
    """Where it was read (``topic[partition]@offset``, a subject)."""

    @property
    def id(self) -> UUID:
        """The message id: the inbox's deduplication key."""
        return self.message.id

    @property
    def aggregate_type(self) -> str:
        """The message's aggregate type."""
        return self.message.aggregate_type

    @property
    def aggregate_id(self) -> str:
        """The message's aggregate id."""
        return self.message.aggregate_id

    @property
    def event_type(self) -> str:
        """The message's event type."""
        return self.message.event_type

    def payload_as(self, type: type[T]) -> T:
        """The JSON payload decoded into ``type`` (a msgspec Struct, dataclass, ...);
        :class:`UnreadableMessageError` if it does not fit."""
        try:
            return msgspec.json.decode(self.message.payload, type=type)
        except msgspec.DecodeError as exc:
            raise UnreadableMessageError(
                f"{self._where()}: payload of {self.event_type!r} does not decode as "
                f"{getattr(type, '__name__', type)}: {exc}"
            ) from None

    def _where(self) -> str:
        return f"message {self.id}" + (f" at {self.source}" if self.source else "")


def _text(value: str | bytes, name: str, source: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableMessageError(
            f"record at {source}: header {name!r} is not UTF-8 text; it was not written by "
            "outboxkit: route it to your error handling"
        ) from None


def _header_map(headers: Headers | None, source: str) -> dict[str, str]:
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {name: _text(value, name, source) for name, value in pairs if value is not None}


def _created_at(message_id: UUID) -> datetime:
    """The UUIDv7 id's millisecond timestamp (now for ids of other versions)."""
    if message_id.version == 7:
        return datetime.fromtimestamp((message_id.int >> 80) / 1000, UTC)
    return datetime.now(UTC)


def _data(payload: bytes, content_type: str, where: str, event_type: str) -> Any:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return msgspec.json.decode(payload)
        except msgspec.DecodeError as exc:
            raise UnreadableMessageError(
                f"{where}: payload of {event_type!r} is not valid JSON although its content "
                f"type is {content_type!r} ({exc}): route it to your error handling"
            ) from None
    if kind.startswith("text/"):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise UnreadableMessageError(
                f"{where}: payload of {event_type!r} is not UTF-8 text although its content "
                f"type is {content_type!r}: route it to your error handling"
            ) from None
    return payload


def record_origin(record: Any) -> tuple[str | None, str]:
    """The topic (or subject) a client's record arrived on, and its ``source`` for errors:
    ``topic[partition]@offset`` for an aiokafka ``ConsumerRecord``; the subject, with the
    stream sequence for JetStream, for a nats-py ``Msg``; ``(None, "")`` for anything else."""
    topic = getattr(record, "topic", None)
    if topic is not None:
        partition, offset = getattr(record, "partition", "?"), getattr(record, "offset", "?")
        return topic, f"{topic}[{partition}]@{offset}"
    subject = getattr(record, "subject", None)
    if subject is None:
        return None, ""
    try:
        metadata = record.metadata  # JetStream messages only
    except Exception:
        metadata = None
    if metadata is None:
        return subject, subject
    return subject, f"{subject} (stream {metadata.stream} seq {metadata.sequence.stream})"


def decode(
    headers: Headers | None,
    payload: bytes | bytearray | memoryview | None,
    *,
    topic: str | None = None,
    key: str | bytes | None = None,
    source: str = "",
) -> InboxMessage:
    """The outboxkit message carried by a record's ``headers`` and ``payload``.

    ``topic`` (the topic or subject it arrived on) and ``key`` (its broker key) are kept in
    the message; ``source`` names the record in errors. Raises :class:`UnreadableMessageError`
    (one line: what is wrong, where) if the record lacks the outboxkit headers, has malformed
    ones, or its payload does not decode by its content type.
    """
    where = source or topic or "?"
    found = _header_map(headers, where)
    missing = [name for name in _REQUIRED if not found.get(name)]
    if missing:
        what = "no outboxkit headers" if len(missing) == len(_REQUIRED) else "no " + missing[0]
        raise UnreadableMessageError(
            f"record at {where} has {what}: it was not published by outboxkit; route it to "
            "your error handling (it cannot be deduplicated)"
        )
    try:
        message_id = UUID(found[HEADER_ID])
    except ValueError:
        raise UnreadableMessageError(
            f"record at {where}: header {HEADER_ID!r} is not a UUID ({found[HEADER_ID]!r}): "
            "it was not published by outboxkit; route it to your error handling"
        ) from None
    sequence: int | None = None
    raw_sequence = found.get(HEADER_SEQUENCE)
    if raw_sequence is not None:
        try:
            sequence = int(raw_sequence)
        except ValueError:
            raise UnreadableMessageError(
                f"record at {where}: header {HEADER_SEQUENCE!r} is not an integer "
                f"({raw_sequence!r}): route it to your error handling"
            ) from None
    content_type = next(
        (found[name] for name in CONTENT_TYPE_HEADERS if name in found), "application/octet-stream"
    )
    body = bytes(payload or b"")
    aggregate_id = found[HEADER_AGGREGATE_ID]
    key_text = _text(key, "key", where) if key is not None else None
    own = {
        name: value
        for name, value in found.items()
        if not name.startswith("outboxkit-") and name not in CONTENT_TYPE_HEADERS
    }
    message = Message(
        id=message_id,
        aggregate_type=found[HEADER_AGGREGATE_TYPE],
        aggregate_id=aggregate_id,
        event_type=found[HEADER_EVENT_TYPE],
        payload=body,
        topic=topic or None,
        key=key_text if key_text and key_text != aggregate_id else None,
        headers=own,
        content_type=content_type,
        created_at=_created_at(message_id),
    )
    label = f"message {message_id} at {where}"
    return InboxMessage(
        message=message,
        sequence=sequence,
        data=_data(body, content_type, label, message.event_type),
        source=where,
    )
