"""What a claim saw of each document, so that its ack needs no read of its own."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from outboxkit_mongodb.names import OutboxFields

__all__ = ["ClaimedDocument", "ClaimedDocuments"]

REMEMBERED = 20_000
"""Documents remembered between claim and ack; the oldest are forgotten first (an ack of a
forgotten document reads it instead, as it would after a restart)."""


class ClaimedDocument(NamedTuple):
    """A document as the claim read it."""

    seq: Any
    """``<f>_seq`` at the claim (None if the document was not pending)."""
    size: int
    """Entries in its outbox at the claim."""
    entries: Mapping[str, Mapping[str, Any]]
    """The stored value of each entry, by message id."""

    @classmethod
    def read(cls, doc: Mapping[str, Any], fields: OutboxFields) -> ClaimedDocument:
        """The document ``doc`` (with its outbox, ``<f>_seq`` and ``<f>_pending``) as read."""
        outbox = doc.get(fields.array) or []
        return cls(
            seq=doc.get(fields.seq) if doc.get(fields.pending) else None,
            size=len(outbox),
            entries={str(raw.get("id")): raw for raw in outbox},
        )

    def seen(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` whose entries were read, in order."""
        return [i for i in ids if i in self.entries]

    def whole(self, ids: Sequence[str]) -> bool:
        """True if ``ids`` were the whole outbox at the claim (the ack may empty it, guarded
        by ``<f>_seq`` against appends since)."""
        return self.seq is not None and len(set(ids)) == self.size


class ClaimedDocuments:
    """Claimed documents by envelope ref, bounded (the least recently claimed go first)."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        self._limit = limit
        self._documents: OrderedDict[str, ClaimedDocument] = OrderedDict()

    def remember(self, ref: str, document: ClaimedDocument) -> None:
        self._documents[ref] = document
        self._documents.move_to_end(ref)
        while len(self._documents) > self._limit:
            self._documents.popitem(last=False)

    def take(self, ref: str | int | None) -> ClaimedDocument | None:
        """The document claimed under ``ref``, forgotten from now on (None if unknown)."""
        return self._documents.pop(ref, None) if isinstance(ref, str) else None
