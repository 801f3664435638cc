"""The outbox message, its validation, broker headers and topic routing."""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from outboxkit.errors import ConfigurationError, InvalidMessageError
from outboxkit.uuidv7 import uuid7

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "HEADER_AGGREGATE_ID",
    "HEADER_AGGREGATE_TYPE",
    "HEADER_EVENT_TYPE",
    "HEADER_ID",
    "HEADER_SEQUENCE",
    "ROUTING_FIELDS",
    "Message",
    "broker_headers",
    "check_messages",
    "check_template",
    "route",
    "trace_context",
]

HEADER_ID = "outboxkit-id"
HEADER_AGGREGATE_TYPE = "outboxkit-aggregate-type"
HEADER_AGGREGATE_ID = "outboxkit-aggregate-id"
HEADER_EVENT_TYPE = "outboxkit-event-type"
HEADER_SEQUENCE = "outboxkit-sequence"
"""The message's sequence number within its aggregate, set by the relay from the store (see
:attr:`outboxkit.protocols.Envelope.sequence`); absent if the store keeps none."""
RESERVED_PREFIX = "outboxkit-"
"""Headers of a message starting with it are not sent (see :func:`broker_headers`)."""
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
ROUTING_FIELDS = frozenset({"topic", "aggregate_type", "aggregate_id", "event_type"})

trace_context: ContextVar[Mapping[str, str] | None] = ContextVar(
    "outboxkit_trace_context", default=None
)
"""W3C trace context (``traceparent``/``tracestate``/``baggage``) captured into messages at
write time.

Set it from your tracing middleware; if OpenTelemetry is installed and this is unset, the
current OpenTelemetry context is used.
"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Message(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One event to publish, written in the same transaction as the business change.

    ``payload`` holds encoded bytes; build messages with :meth:`Message.create` to encode a
    payload object as JSON. ``key`` defaults to ``aggregate_id``; ``topic`` may be left empty
    when the publisher routes by a template. Messages are not tracked by the cyclic garbage
    collector (``gc=False``): they hold only strings, bytes and scalars, and a relay keeps
    thousands in flight.
    """

    aggregate_type: str
    """Kind of aggregate the event belongs to, e.g. ``order``."""
    aggregate_id: str
    """Id of the aggregate: events of one id are published in commit order."""
    event_type: str
    """Name of the event, e.g. ``OrderCreated``."""
    payload: bytes = b""
    """The encoded body (``Message.create`` encodes an object as JSON)."""
    topic: str | None = None
    """Kafka topic or NATS subject; None when the publisher routes by a template."""
    key: str | None = None
    """Broker partition key; None: ``aggregate_id``."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Broker headers (with ``Message.create``: the trace context)."""
    content_type: str = "application/json"
    """Media type of ``payload``."""
    id: UUID = msgspec.field(default_factory=uuid7)
    """Stable UUIDv7, sent as the ``outboxkit-id`` header, for consumers to drop duplicates."""
    created_at: datetime = msgspec.field(default_factory=_utcnow)
    """When the message was created (UTC)."""

    def __post_init__(self) -> None:
        for name in ("aggregate_type", "aggregate_id", "event_type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidMessageError(
                    f"Message.{name} must be a non-empty string, got {value!r}"
                )
        if not isinstance(self.payload, bytes):
            raise InvalidMessageError(
                f"Message.payload must be bytes, got {type(self.payload).__name__}; "
                "use Message.create(payload=...) to encode an object as JSON"
            )
        for field_name in ("topic", "key"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidMessageError(
                    f"Message.{field_name} must be a non-empty string or None"
                )
        if not isinstance(self.headers, dict):
            raise InvalidMessageError("Message.headers must be a dict of str to str")
        for k, v in self.headers.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidMessageError(
                    f"Message.headers must map str to str; header {k!r} has a "
                    f"{type(v).__name__} value: convert it to a string"
                )

    @classmethod
    def create(
        cls,
        *,
        aggregate_type: str,
        aggregate_id: str | int | UUID,
        event_type: str,
        payload: Any = None,
        topic: str | None = None,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Message:
        """Build a message, encoding ``payload`` as JSON unless it is already ``bytes``.

        The current trace context (see :data:`trace_context`) is copied into the headers.
        Raises :class:`InvalidMessageError` if the payload cannot be encoded.
        """
        if isinstance(payload, bytes | bytearray | memoryview):
            body = bytes(payload)
            ctype = content_type or "application/octet-stream"
        else:
            try:
                body = msgspec.json.encode(payload)
            except (TypeError, msgspec.EncodeError, OverflowError) as exc:
                raise InvalidMessageError(
                    f"payload of {event_type!r} cannot be encoded as JSON: {exc}"
                ) from exc
            ctype = content_type or "application/json"
        merged = dict(_current_trace())
        merged.update(headers or {})
        agg_id = str(aggregate_id) if isinstance(aggregate_id, int | UUID) else aggregate_id
        return cls(
            aggregate_type=aggregate_type,
            aggregate_id=agg_id,
            event_type=event_type,
            payload=body,
            topic=topic,
            key=key,
            headers=merged,
            content_type=ctype,
        )

    @property
    def partition_key(self) -> str:
        """The broker key: ``key`` if set, else the aggregate id."""
        return self.key if self.key is not None else self.aggregate_id

    def check_size(self, max_payload_bytes: int) -> None:
        """Raise :class:`InvalidMessageError` if the payload exceeds ``max_payload_bytes``."""
        if len(self.payload) > max_payload_bytes:
            raise InvalidMessageError(
                f"payload of {self.event_type!r} for aggregate {self.aggregate_id!r} is "
                f"{len(self.payload)} bytes, over the limit of {max_payload_bytes}; "
                "store large data elsewhere and reference it, or raise max_payload_bytes"
            )


def check_messages(messages: Iterable[object], max_payload_bytes: int) -> None:
    """What every writer checks before it writes: each item is a :class:`Message` and its
    payload is within ``max_payload_bytes``; else :class:`InvalidMessageError`."""
    for message in messages:
        if not isinstance(message, Message):
            raise InvalidMessageError(
                f"expected an outboxkit Message, got {type(message).__name__}: build one with "
                "Message.create(...)"
            )
        message.check_size(max_payload_bytes)


@functools.cache
def _otel_inject() -> Callable[[dict[str, str]], None] | None:
    """OpenTelemetry's ``propagate.inject`` if installed (looked up once: a failed import is
    not cached by Python and cost a few hundred microseconds on every ``Message.create``)."""
    try:
        from opentelemetry import propagate  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    inject: Callable[[dict[str, str]], None] = propagate.inject
    return inject


def _current_trace() -> Mapping[str, str]:
    explicit = trace_context.get()
    if explicit is not None:
        return {k: v for k, v in explicit.items() if k in TRACE_HEADERS}
    inject = _otel_inject()
    if inject is None:
        return {}
    carrier: dict[str, str] = {}
    inject(carrier)
    return {k: v for k, v in carrier.items() if k in TRACE_HEADERS}


def broker_headers(message: Message) -> list[tuple[str, str]]:
    """Headers every publisher sends: the message's own, then the outboxkit ones.

    Of the message's own headers, those starting with ``outboxkit-`` are dropped (a writer
    cannot forge them), except :data:`HEADER_SEQUENCE`, which the relay sets.
    """
    headers = [(k, v) for k, v in message.headers.items() if not k.startswith(RESERVED_PREFIX)]
    headers += [
        (HEADER_ID, str(message.id)),
        (HEADER_AGGREGATE_TYPE, message.aggregate_type),
        (HEADER_AGGREGATE_ID, message.aggregate_id),
        (HEADER_EVENT_TYPE, message.event_type),
    ]
    sequence = message.headers.get(HEADER_SEQUENCE)
    if sequence is not None:
        headers.append((HEADER_SEQUENCE, sequence))
    return headers


def check_template(template: str) -> str:
    """Validate a routing template such as ``"{aggregate_type}.events"``; return it."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigurationError(f"routing template {template!r} is malformed: {exc}") from exc
    unknown = names - ROUTING_FIELDS
    if unknown or "" in names:
        raise ConfigurationError(
            f"routing template {template!r} uses unknown fields {sorted(unknown)}; "
            f"allowed: {sorted(ROUTING_FIELDS)}"
        )
    return template


def route(message: Message, template: str) -> str:
    """The destination (topic or subject) of ``message`` under ``template``.

    ``{topic}`` falls back to the aggregate type when the message has no topic.
    """
    if template == "{topic}":  # the default, per message on the hot path: skip str.format
        return message.topic or message.aggregate_type
    return template.format(
        topic=message.topic or message.aggregate_type,
        aggregate_type=message.aggregate_type,
        aggregate_id=message.aggregate_id,
        event_type=message.event_type,
    )
