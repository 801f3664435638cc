"""The MongoDB inbox: processed ids kept in the document the consumer changes.

Like the embedded outbox, the inbox is a field of the consumer's own document, written by the
same single-document update as the state change, so no multi-document transaction is needed::

    inbox = MongoInbox(guard="skip")
    verdict = await inbox.update_one(
        accounts, {"_id": account_id}, {"$inc": {"balance": amount}}, message, upsert=True
    )

The update's filter gets ``<field>: {$ne: id}`` (and, with the guard, "the aggregate's last
applied sequence is below this one"); the update gets ``$push`` of the id (and ``$set`` of the
sequence). The server applies it atomically, so of two consumers racing on one message only
one matches; the other (and any redelivery) finds the id and gets ``Verdict.DUPLICATE``.

Retention: ``<field>`` grows by one id per applied message. ``outboxkit inbox prune --inbox
mongodb`` removes ids older than the retention from every document, a batch of documents per
write, with ``$pullAll`` of exactly the ids it read (a concurrent append is never lost). Ages
are read from the ids themselves (UUIDv7: the time the event was written), not from the time
they were processed. The guard's numbers (``<field>_last``, one per source aggregate) stay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from outboxkit.errors import ConfigurationError, OutboxError
from outboxkit.inbox.contract import Guard, Verdict
from outboxkit.inbox.decoding import InboxMessage
from outboxkit_mongodb.errors import InvalidWriteError
from outboxkit_mongodb.names import check_field

__all__ = ["MissingDocumentError", "MongoInbox"]

_GUARDS = ("off", "skip", "park")
_ATTEMPTS = 5


class MissingDocumentError(OutboxError, LookupError):
    """No document matched the filter and ``upsert`` was false: nothing was applied."""


def aggregate_slot(message: InboxMessage) -> str:
    """The key of the message's aggregate under ``<field>_last`` (a hash: aggregate ids may
    hold dots or dollars, which field names cannot)."""
    text = f"{message.aggregate_type}\0{message.aggregate_id}".encode()
    return "a" + hashlib.blake2b(text, digest_size=10).hexdigest()


class MongoInbox:
    """Applies a message's update to one document unless its id is already there."""

    def __init__(
        self,
        *,
        field: str = "inbox",
        guard: Guard = "off",
        parked: AsyncCollection[Any] | None = None,
    ) -> None:
        if guard not in _GUARDS:
            raise ConfigurationError(f"guard must be one of {', '.join(_GUARDS)}, got {guard!r}")
        if guard == "park" and parked is None:
            raise ConfigurationError("guard='park' needs the parked collection: pass parked=...")
        self.field = check_field(field, "inbox field")
        """The array field of processed ids."""
        self.last_field = f"{self.field}_last"
        """The field of the guard's last sequence per source aggregate."""
        self.guard: Guard = guard
        """The per-aggregate guard: off, skip or park."""
        self.parked = parked
        """Where parked messages go (guard ``park``)."""

    def _guarded(self, message: InboxMessage) -> bool:
        return self.guard != "off" and message.sequence is not None

    def prepare(
        self, filter: Mapping[str, Any], update: Mapping[str, Any], message: InboxMessage
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (filter, update) applying ``update`` only if ``message`` is fresh: for writes
        this class does not wrap (e.g. an ``UpdateOne`` of a ``bulk_write``)."""
        if not isinstance(update, Mapping) or not all(op.startswith("$") for op in update):
            raise InvalidWriteError("update must be a document of update operators ($set, ...)")
        guarded = {self.field, self.last_field}
        for op, args in update.items():
            clash = [k for k in args if k.split(".", 1)[0] in guarded]
            if clash:
                raise InvalidWriteError(f"update {op} sets inbox fields {clash}: leave them")
        full_filter = {**filter, self.field: {"$ne": str(message.id)}}
        combined: dict[str, Any] = {op: dict(args) for op, args in update.items()}
        combined.setdefault("$push", {})[self.field] = str(message.id)
        if self._guarded(message):
            slot = f"{self.last_field}.{aggregate_slot(message)}"
            full_filter["$or"] = [{slot: {"$exists": False}}, {slot: {"$lt": message.sequence}}]
            if "$or" in filter:
                full_filter["$and"] = [{"$or": filter["$or"]}, {"$or": full_filter.pop("$or")}]
            combined.setdefault("$set", {})[slot] = message.sequence
        return full_filter, combined

    async def update_one(
        self,
        collection: AsyncCollection[Any],
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        message: InboxMessage,
        *,
        upsert: bool = False,
        session: AsyncClientSession | None = None,
    ) -> Verdict:
        """``collection.update_one(filter, update)`` if ``message`` is fresh for the document
        ``filter`` selects (one document, by its ``_id`` or another unique field); its verdict.

        Raises :class:`MissingDocumentError` if no document matches and ``upsert`` is false.
        """
        full_filter, combined = self.prepare(filter, update, message)
        for _ in range(_ATTEMPTS):
            try:
                result = await collection.update_one(
                    full_filter, combined, upsert=upsert, session=session
                )
            except DuplicateKeyError:
                result = None  # the upsert lost against the existing document: look at it
            if result is not None and (result.matched_count or result.upserted_id is not None):
                return Verdict.FRESH
            verdict = await self._why_not(collection, filter, message, upsert, session)
            if verdict is not None:
                return verdict
        raise OutboxError(  # pragma: no cover - needs a document changing under every attempt
            f"inbox update of message {message.id} kept racing with other writes; retry it"
        )

    async def _why_not(
        self,
        collection: AsyncCollection[Any],
        filter: Mapping[str, Any],
        message: InboxMessage,
        upsert: bool,
        session: AsyncClientSession | None,
    ) -> Verdict | None:
        """Why the update matched nothing: the verdict, or None to try again."""
        doc = await collection.find_one(
            filter, {self.field: 1, self.last_field: 1}, session=session
        )
        if doc is None:
            if upsert:
                return None
            raise MissingDocumentError(
                f"no document of {collection.name!r} matches {dict(filter)!r}: message "
                f"{message.id} was not applied; create the document first or pass upsert=True"
            )
        if str(message.id) in (doc.get(self.field) or []):
            return Verdict.DUPLICATE
        if not self._guarded(message):
            return None
        last = (doc.get(self.last_field) or {}).get(aggregate_slot(message))
        if last is None or message.sequence is None or last < message.sequence:
            return None
        if self.guard == "park" and self.parked is not None:
            await self._park(message, last, session)
            return Verdict.PARKED
        return Verdict.STALE

    async def _park(
        self, message: InboxMessage, last: int, session: AsyncClientSession | None
    ) -> None:
        assert self.parked is not None
        m = message.message
        await self.parked.replace_one(
            {"_id": str(m.id)},
            {
                "_id": str(m.id),
                "aggregate_type": m.aggregate_type,
                "aggregate_id": m.aggregate_id,
                "event_type": m.event_type,
                "sequence": message.sequence,
                "last_sequence": last,
                "topic": m.topic,
                "headers": dict(m.headers),
                "content_type": m.content_type,
                "payload": m.payload,
            },
            upsert=True,
            session=session,
        )
