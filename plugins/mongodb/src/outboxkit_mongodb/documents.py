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
from pymongo.asynchronous.collection import AsyncCollection

from outboxkit.errors import StoreUnavailableError
from outboxkit.message import Message
from outboxkit.protocols import Envelope
from outboxkit_mongodb.claimed import ClaimedDocument, ClaimedDocuments
from outboxkit_mongodb.entries import as_utc, decode_entry, encode_entry, make_ref, parse_ref
from outboxkit_mongodb.names import OutboxFields
from outboxkit_mongodb.schema import Schema

__all__ = ["Outboxes"]

EARLIEST = datetime.min.replace(tzinfo=UTC)
PUT_BACK_TRIES = 20
"""Compare-and-set rounds of a replay into one document before it gives up."""

Update = tuple[dict[str, Any], dict[str, Any]]
"""(filter, update) of one document."""


def by_document(envelopes: Iterable[Envelope]) -> dict[str, dict[Any, list[Envelope]]]:
    """Envelopes grouped by collection, then document ``_id`` (input order kept)."""
    grouped: dict[str, dict[Any, list[Envelope]]] = defaultdict(dict)
    for envelope in envelopes:
        collection, doc_id = parse_ref(envelope.ref)
        grouped[collection].setdefault(doc_id, []).append(envelope)
    return grouped


def _first_sequence(seq: Any, pending: int) -> int | None:
    """The aggregate sequence number of the first entry of an outbox of ``pending`` entries.

    ``<f>_seq`` counts the entries ever appended, and acks remove the published entries of a
    document from the front of its array (an aggregate's messages are published in array
    order, and a failure holds back the later ones), so the entries left are the last
    ``pending`` appended: numbers ``seq - pending + 1`` to ``seq``. None without a count.
    """
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < pending:
        return None
    return seq - pending + 1


class Outboxes:
    """Claims, removes and reschedules entries of the configured aggregate collections."""

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        self._fields: OutboxFields = schema.fields
        # Positions only need to grow within a shard in publish order: a per-store counter
        # that starts at the current microsecond grows across claims and restarts.
        self._positions = itertools.count(time.time_ns() // 1000)
        self._claimed = ClaimedDocuments()

    def claim_filter(self, shard: int, now: datetime, block: bool = True) -> dict[str, Any]:
        """Documents of ``shard`` with pending entries that are not in retry backoff (and,
        with ``block``, have no dead letter)."""
        f = self._fields
        found = {f.shard: shard, f.pending: True, f.due: {"$not": {"$gt": now}}}
        return {**found, f.dead: {"$exists": False}} if block else found

    @property
    def claim_sort(self) -> list[tuple[str, int]]:
        return [(self._fields.since, 1), ("_id", 1)]

    async def claim(
        self, shard: int, limit: int, now: datetime, block: bool = True
    ) -> list[Envelope]:
        """Up to ``limit`` entries of due documents in ``shard``, whole documents first
        (with ``block``, none of a document that has a dead letter).

        Documents are taken oldest pending first (``<f>_since``, through the claim index;
        across collections by the same key), each with all its entries in array order (its
        commit order), until ``limit`` is reached; only the last document can be cut short.
        So a batch spans as few documents as possible, and its ack costs one write per
        document (the claim remembers what it read of each).
        """
        f = self._fields
        found: list[tuple[tuple[datetime, str, str, str], str, dict[str, Any]]] = []
        projection = {f.array: 1, f.retry: 1, f.since: 1, f.seq: 1, f.pending: 1}
        for name in self._schema.collections:
            cursor = (
                self._schema.aggregates(name)
                .find(self.claim_filter(shard, now, block), projection)
                .sort(self.claim_sort)
                .limit(limit)
            )
            entries, last = 0, EARLIEST
            async with cursor:  # closed on the server too when the loop stops early
                async for doc in cursor:
                    since = as_utc(doc.get(f.since) or EARLIEST)
                    if entries >= limit and since != last:
                        break  # the rest of this collection comes after a full batch
                    # BSON dates have millisecond precision: ties go to the older first entry
                    # (UUIDv7 ids grow with time, and within a millisecond per writer process).
                    listed = doc.get(f.array) or [{}]
                    key = (since, str(listed[0].get("id", "")), name, str(doc["_id"]))
                    found.append((key, name, doc))
                    entries, last = entries + len(listed), since
        found.sort(key=lambda item: item[0])
        envelopes: list[Envelope] = []
        for _, name, doc in found:
            attempts: dict[str, int] = doc.get(f.retry) or {}
            ref = make_ref(name, doc["_id"])
            self._claimed.remember(ref, ClaimedDocument.read(doc, f))
            listed = doc.get(f.array) or []
            first = _first_sequence(doc.get(f.seq), len(listed))
            for index, raw in enumerate(listed[: limit - len(envelopes)]):
                envelopes.append(
                    Envelope(
                        message=decode_entry(raw),
                        shard=shard,
                        position=next(self._positions),
                        attempts=int(attempts.get(raw["id"], 0)),
                        ref=ref,
                        sequence=None if first is None else first + index,
                    )
                )
            if len(envelopes) >= limit:
                break
        return envelopes

    async def remove(
        self,
        envelopes: Sequence[Envelope],
        session: AsyncClientSession | None,
        *,
        dead: bool = False,
    ) -> None:
        """Remove exactly these entries; clear the markers of documents they empty. With
        ``dead``, the same update of each document adds the entries' ids to ``<f>_dead``.

        Per collection, one bulk write of one update per document, from what the claim read:

        * if the entries were the whole outbox, an update guarded by ``<f>_seq`` (every
          append increments it) empties the array and unsets the markers; if a guard misses
          (appended to meanwhile), a second bulk write removes the entries the other way:
        * ``$pullAll`` of the entries' stored values (entries are never modified, so this
          removes exactly them, on every server, and does nothing to a document already
          emptied), which leaves the markers in place.

        A document the claim did not remember (forgotten, or claimed by another store) is
        read first, then handled the same way. Each document gets one update at a time: the
        relay never sends two concurrent updates to one document (FerretDB would lose one).
        """
        for name, docs in by_document(envelopes).items():
            coll = self._schema.aggregates(name)
            empties: list[UpdateOne] = []
            unless_emptied: list[UpdateOne] = []
            pulls: list[UpdateOne] = []
            for doc_id, items in docs.items():
                ids = [str(e.message.id) for e in items]
                claimed = self._claimed.take(items[0].ref)
                if claimed is None or len(claimed.seen(ids)) < len(ids):
                    await self._read_and_remove(coll, doc_id, ids, session, dead)
                    continue
                empty, pull = self._plan(doc_id, claimed, ids, dead)
                if empty is None:
                    pulls.append(UpdateOne(*pull))
                else:
                    empties.append(UpdateOne(*empty))
                    unless_emptied.append(UpdateOne(*pull))
            if empties and await self._schema.bulk_write(coll, empties, session) < len(empties):
                pulls += unless_emptied
            if pulls:
                await self._schema.bulk_write(coll, pulls, session)

    def _plan(
        self, doc_id: Any, claimed: ClaimedDocument, ids: Sequence[str], dead: bool = False
    ) -> tuple[Update | None, Update]:
        """The guarded emptying (None unless ``ids`` were the whole outbox) and the pull of
        the entries ``ids`` (all seen by ``claimed``); with ``dead`` both mark them dead."""
        mark = {"$addToSet": {self._fields.dead: {"$each": list(ids)}}} if dead else {}
        where, pull = self._pull(doc_id, [claimed.entries[i] for i in ids], ids)
        if not claimed.whole(ids):
            return None, (where, pull | mark)
        guard, empty = self._empty(doc_id, claimed.seq)
        return (guard, empty | mark), (where, pull | mark)

    def _empty(self, doc_id: Any, seq: Any) -> Update:
        """Empty the outbox and unset the markers, unless appended to since ``seq``."""
        f = self._fields
        return {"_id": doc_id, f.seq: seq}, {"$set": {f.array: []}, "$unset": f.cleared_when_empty}

    def _pull(self, doc_id: Any, stored: Sequence[Any], ids: Sequence[str]) -> Update:
        """Remove exactly the entries ``stored`` (and their retry counts)."""
        f = self._fields
        return {"_id": doc_id}, {
            "$pullAll": {f.array: list(stored)},
            "$unset": {f"{f.retry}.{i}": "" for i in ids},
        }

    async def _read_and_remove(
        self,
        coll: AsyncCollection[dict[str, Any]],
        doc_id: Any,
        ids: Sequence[str],
        session: AsyncClientSession | None,
        dead: bool = False,
    ) -> None:
        f = self._fields
        current = await coll.find_one(
            {"_id": doc_id}, {f.array: 1, f.seq: 1, f.pending: 1}, session=session
        )
        if current is None:
            return
        read = ClaimedDocument.read(current, f)
        present = read.seen(ids)
        empty, pull = self._plan(doc_id, read, present, dead)
        if empty is not None and (await coll.update_one(*empty, session=session)).matched_count:
            return
        if present:
            await coll.update_one(*pull, session=session)

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
            await self._schema.bulk_write(self._schema.aggregates(name), ops, session)

    async def put_back(
        self, collection: str, doc_id: Any, shard: int, messages: Sequence[Message]
    ) -> bool:
        """Put dead-lettered ``messages`` (in their original order) back at the front of the
        document's outbox, where they were, and drop their ids from ``<f>_dead``; False if
        the document is gone.

        The array is rewritten with a compare-and-set on its value and ``<f>_seq`` (servers
        such as FerretDB 1.x ignore ``$push``'s ``$position``), so an ack or an append that
        lands in between makes it read and try again. An entry still in the array (a
        dead-lettering interrupted halfway) is not added twice.
        """
        f = self._fields
        coll = self._schema.aggregates(collection)
        ids = [str(m.id) for m in messages]
        for _ in range(PUT_BACK_TRIES):
            doc = await coll.find_one({"_id": doc_id}, {f.array: 1, f.seq: 1})
            if doc is None:
                return False
            current = doc.get(f.array)
            present = {str(raw.get("id")) for raw in current or []}
            back = [m for m in messages if str(m.id) not in present]
            update: dict[str, Any] = {
                "$set": {
                    f.array: [encode_entry(m) for m in back] + list(current or []),
                    f.pending: True,
                    f.shard: shard,
                },
                "$pullAll": {f.dead: ids},
            }
            if back:
                update["$min"] = {f.since: min(m.created_at for m in back)}
                update["$inc"] = {f.seq: len(back)}  # a write: change streams wake the relay
            guard = {"_id": doc_id, f.seq: doc.get(f.seq), f.array: current}
            if (await coll.update_one(guard, update)).matched_count:
                await self._unset_empty_dead(coll, doc_id)
                return True
        raise StoreUnavailableError(
            f"replay into document {doc_id!r} of {collection!r}: its outbox kept changing "
            f"({PUT_BACK_TRIES} tries); run the replay again"
        )

    async def forget_dead(self, collection: str, doc_id: Any, ids: Sequence[str]) -> None:
        """Drop ``ids`` from the document's ``<f>_dead`` (discarded dead letters)."""
        coll = self._schema.aggregates(collection)
        await coll.update_one({"_id": doc_id}, {"$pullAll": {self._fields.dead: list(ids)}})
        await self._unset_empty_dead(coll, doc_id)

    async def _unset_empty_dead(self, coll: AsyncCollection[dict[str, Any]], doc_id: Any) -> None:
        """Remove ``<f>_dead`` if it is empty, so the claim filter sees no dead letter (an
        id added meanwhile keeps it)."""
        dead = self._fields.dead
        await coll.update_one({"_id": doc_id, dead: {"$size": 0}}, {"$unset": {dead: ""}})

    async def backlog(self, now: datetime) -> tuple[int, float | None, int]:
        """Pending entries in all collections, the age of the oldest (by its write time) and
        how many of them are in documents with a dead letter."""
        f = self._fields
        count = parked = 0
        oldest: datetime | None = None
        for name in self._schema.collections:
            cursor = self._schema.aggregates(name).find({f.pending: True}, {f.array: 1, f.dead: 1})
            async for doc in cursor:
                entries = doc.get(f.array) or []
                if doc.get(f.dead):
                    parked += len(entries)
                for raw in entries:
                    count += 1
                    created = decode_entry(raw).created_at
                    oldest = created if oldest is None else min(oldest, created)
        age = None if oldest is None else max(0.0, (now - oldest) / timedelta(seconds=1))
        return count, age, parked


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
