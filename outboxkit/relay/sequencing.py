"""The ``outboxkit-sequence`` header: each message's number within its aggregate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from msgspec.structs import force_setattr

from outboxkit.message import HEADER_SEQUENCE, Message
from outboxkit.protocols import Envelope

__all__ = ["sequenced"]


_copy: Callable[[Message], Message] = Message.__copy__  # type: ignore[attr-defined]


def sequenced(envelopes: Sequence[Envelope]) -> list[Message]:
    """The messages of ``envelopes``, each with the :data:`HEADER_SEQUENCE` header of its
    envelope's ``sequence`` (messages of stores that keep none are passed as they are).

    A shallow copy with new headers, without re-running ``Message.__post_init__`` (the message
    was validated when written): the claimed envelope is left as it is.
    """
    messages: list[Message] = []
    append = messages.append
    for envelope in envelopes:
        message = envelope.message
        sequence = envelope.sequence
        if sequence is not None:
            tagged = _copy(message)
            force_setattr(tagged, "headers", {**message.headers, HEADER_SEQUENCE: str(sequence)})
            message = tagged
        append(message)
    return messages
