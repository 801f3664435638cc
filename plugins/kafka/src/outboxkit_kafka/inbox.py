"""Reading outboxkit messages from aiokafka ``ConsumerRecord`` objects."""

from __future__ import annotations

from typing import Any

from outboxkit.inbox.decoding import InboxMessage, decode, record_origin

__all__ = ["read_record"]


def read_record(record: Any) -> InboxMessage:
    """The outboxkit message in an aiokafka ``ConsumerRecord`` (headers: outboxkit's, value:
    the payload, key: the aggregate id unless the message set one).

    Raises :class:`~outboxkit.inbox.UnreadableMessageError` (one line naming the topic,
    partition and offset) for a record outboxkit did not write or whose payload does not
    decode by its content type.
    """
    topic, source = record_origin(record)
    return decode(record.headers, record.value, topic=topic, key=record.key, source=source)
