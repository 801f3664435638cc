"""Reading outboxkit messages from nats-py messages (core NATS or JetStream)."""

from __future__ import annotations

from typing import Any

from outboxkit.inbox.decoding import InboxMessage, decode, record_origin

__all__ = ["read_msg"]


def read_msg(msg: Any) -> InboxMessage:
    """The outboxkit message in a nats-py ``Msg`` (headers: outboxkit's plus ``Content-Type``
    and ``Nats-Msg-Id``; data: the payload).

    Raises :class:`~outboxkit.inbox.UnreadableMessageError` (one line naming the subject and,
    for JetStream, the stream sequence) for a message outboxkit did not write or whose
    payload does not decode by its content type.
    """
    topic, source = record_origin(msg)
    headers = {k: v for k, v in (msg.headers or {}).items() if k != "Nats-Msg-Id"}
    return decode(headers, msg.data, topic=topic, source=source)
