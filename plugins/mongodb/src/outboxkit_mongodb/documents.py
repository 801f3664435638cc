"""Relay-side operations on the outbox arrays of aggregate documents."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from outboxkit.message import Message
from outboxkit.protocols import Envelope
from outboxkit_mongodb.entries import as_utc, decode_entry, encode_entry, make_ref, parse_ref
from outboxkit_mongodb.names import OutboxFields
from outboxkit_mongodb.schema import Schema
from outboxkit_mongodb.writer import outbox_update

__all__ = ["Outboxes"]

EARLIEST = datetime.min.replace(tzinfo=UTC)


def by_document(envelopes: Iterable[Envelope]) -> dict[str, dict[Any, list[Envelope]]]:
    """Envelopes grouped by collection, then document ``_id`` (input order kept)."""
    grouped: dict[str, dict[Any, list[Envelope]]] = defaultdict(dict)
    for envelope in envelopes:
        collection, doc_id = parse_ref(envelope.ref)
        grouped[collection].setdefault(doc_id, []).append(envelope)
    return grouped


class Outboxes:
    """Claims, removes and reschedules entries of the configured aggregate collections."""

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        self._fields: OutboxFields = schema.fields
        # Positions only need to grow within a shard in publish order: a per-store counter
        # that starts at the current microsecond grows across claims and restarts.
        self._positions = itertools.count(time.time_ns() // 1000)

    def claim_filter(self, shard: int, now: datetime) -> dict[str, Any]:
        """Documents of ``shard`` with pending entries that are not in retry backoff."""
        f = self._fields
        return {f.shard: shard, f.pending: True, f.due: {"$not": {"$gt": now}}}

    @property
    def claim_sort(self) -> list[tuple[str, int]]:
        return [(self._fields.since, 1), ("_id", 1)]

    async def claim(self, shard: int, limit: int, now: datetime) -> list[Envelope]:
        """Up to ``limit`` entries of due documents in ``shard``, whole documents first.

        Documents are taken oldest pending first (``<f>_since``, through the claim index;
        across collections by the same key), each with all its entries in array order (its
        commit order), until ``limit`` is reached; only the last document can be cut short.
        So a batch spans as few documents as possible, and its ack costs one read and one
        write per document.
        """
        f = self._fields
        found: list[tuple[tuple[datetime, str, str, str], str, dict[str, Any]]] = []
        for name in self._schema.collections:
            cursor = (
                self._schema.aggregates(name)
                .find(self.claim_filter(shard, now), {f.array: 1, f.retry: 1, f.since: 1})
                .sort(self.claim_sort)
                .limit(limit)
            )
            async for doc in cursor:
                # BSON dates have millisecond precision: ties go to the older first entry
                # (UUIDv7 ids grow with time, and within a millisecond per writer process).
                first = ((doc.get(f.array) or [{}])[0]).get("id", "")
                key = (as_utc(doc.get(f.since) or EARLIEST), str(first), name, str(doc["_id"]))
                found.append((key, name, doc))
        found.sort(key=lambda item: item[0])
        envelopes: list[Envelope] = []
        for _, name, doc in found:
            attempts: dict[str, int] = doc.get(f.retry) or {}
            ref = make_ref(name, doc["_id"])
            for raw in (doc.get(f.array) or [])[: limit - len(envelopes)]:
                envelopes.append(
                    Envelope(
                        message=decode_entry(raw),
                        shard=shard,
                        position=next(self._positions),
                        attempts=int(attempts.get(raw["id"], 0)),
                        ref=ref,
                    )
                )
            if len(envelopes) >= limit:
                break
        return envelopes

    async def remove(
        self, envelopes: Sequence[Envelope], session: AsyncClientSession | None
    ) -> None:
        """Remove exactly these entries; clear the markers of documents they empty.

        Per document, one read and one write, both selecting it by ``_id`` (the only filter
        FerretDB 1.x's SQLite backend pushes down; anything else scans the collection):

        * if the entries are the whole outbox, one update guarded by ``<f>_seq`` (every
          append increments it) empties the array and unsets the markers; a document
          appended to meanwhile does not match and falls through to
        * ``$pullAll`` of the entries' stored values (entries are never modified, so this
          removes exactly them, on every server), which leaves the markers in place.

        Documents are handled one after the other: the relay never sends two concurrent
        updates to one document (FerretDB would lose one of them).
        """
        f = self._fields
        for name, docs in by_document(envelopes).items():
            coll = self._schema.aggregates(name)
            for doc_id, items in docs.items():
                current = await coll.find_one(
                    {"_id": doc_id}, {f.array: 1, f.seq: 1, f.pending: 1}, session=session
                )
                if current is None:
                    continue
                ids = {str(e.message.id) for e in items}
                outbox = current.get(f.array) or []
                stored = [raw for raw in outbox if raw.get("id") in ids]
                if len(stored) == len(outbox) and f.seq in current and current.get(f.pending):
                    emptied = await coll.update_one(
                        {"_id": doc_id, f.seq: current[f.seq]},
                        {"$set": {f.array: []}, "$unset": f.cleared_when_empty},
                        session=session,
                    )
                    if emptied.matched_count:
                        continue
                if not stored:
                    continue
                await coll.update_one(
                    {"_id": doc_id},
                    {"$pullAll": {f.array: stored}, "$unset": {f"{f.retry}.{i}": "" for i in ids}},
                    session=session,
                )

    async def reschedule(
        self,
        envelopes: Sequence[Envelope],
        error: str,
        due: datetime,
        session: AsyncClientSession | None,
    ) -> None:
        """Count a failed attempt per entry and block each document until ``due``."""
        f = self._fields
        for name, docs in by_document(envelopes).items():
            ops = [
                UpdateOne(
                    {"_id": doc_id, f.pending: True},
                    {
                        "$inc": {f"{f.retry}.{e.message.id}": 1 for e in items},
                        "$set": {f.due: due, f.error: error},
                    },
                )
                for doc_id, items in docs.items()
            ]
            await self._schema.aggregates(name).bulk_write(ops, ordered=False, session=session)

    async def append(self, collection: str, doc_id: Any, message: Message, shard: int) -> bool:
        """Append ``message`` to an existing document's outbox (replay); False if it is gone."""
        result = await self._schema.aggregates(collection).update_one(
            {"_id": doc_id}, outbox_update(self._fields, shard, [message])
        )
        return result.matched_count > 0

    async def backlog(self, now: datetime) -> tuple[int, float | None]:
        """Pending entries in all collections and the age of the oldest (by its write time)."""
        f = self._fields
        count = 0
        oldest: datetime | None = None
        for name in self._schema.collections:
            cursor = self._schema.aggregates(name).find({f.pending: True}, {f.array: 1})
            async for doc in cursor:
                for raw in doc.get(f.array) or []:
                    count += 1
                    created = decode_entry(raw).created_at
                    oldest = created if oldest is None else min(oldest, created)
        age = None if oldest is None else max(0.0, (now - oldest) / timedelta(seconds=1))
        return count, age


def dead_letter_document(
    envelope: Envelope, error: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, replacement) upserting the dead letter of ``envelope``."""
    collection, doc_id = parse_ref(envelope.ref)
    key = {"_id": str(envelope.message.id)}
    return key, {
        **key,
        "entry": encode_entry(envelope.message),
        "collection": collection,
        "doc_id": doc_id,
        "shard": envelope.shard,
        "error": error,
        "attempts": envelope.attempts + 1,
        "failed_at": now,
    }
