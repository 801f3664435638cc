"""The ``outboxkit-sequence`` header: each message's number within its aggregate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from msgspec.structs import force_setattr

from outboxkit.message import HEADER_SEQUENCE, Message
from outboxkit.protocols import Envelope

__all__ = ["sequenced"]


def _copier(message: Message) -> Callable[[], Message]:
    copy: Callable[[], Message] = message.__copy__  # type: ignore[attr-defined]
    return copy


def sequenced(envelopes: Sequence[Envelope]) -> list[Message]:
    """The messages of ``envelopes``, each with the :data:`HEADER_SEQUENCE` header of its
    envelope's ``sequence`` (messages of stores that keep none are passed as they are).

    A shallow copy with new headers, without re-running ``Message.__post_init__`` (the message
    was validated when written): the claimed envelope is left as it is.
    """
    messages: list[Message] = []
    for envelope in envelopes:
        message = envelope.message
        if envelope.sequence is not None:
            tagged = _copier(message)()
            force_setattr(
                tagged, "headers", {**message.headers, HEADER_SEQUENCE: str(envelope.sequence)}
            )
            message = tagged
        messages.append(message)
    return messages
