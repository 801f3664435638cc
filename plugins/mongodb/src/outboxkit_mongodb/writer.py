"""The writer API: business change and outbox entries in one single-document update.

``MongoOutbox`` adds the messages to the caller's update as ``$push: {outbox: {$each: [...]}}``
plus the relay's markers (``$set`` shard and pending, ``$min`` since, ``$inc`` seq), so one
atomic single-document write carries both: no multi-document transaction is needed.

The filter must select exactly one document by equality on the aggregate field (``_id`` by
default, or a configured field that has a unique index); the aggregate id of the document is
``str(value)`` and every message must carry it. Bad input raises before anything is sent.

The shard count comes from the store: the first write into a database reads it from the meta
document that ``outboxkit migrate --store mongodb`` wrote there, and the writer keeps it. A
writer can therefore never file entries under shards that no relay claims.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.results import InsertOneResult, UpdateResult

from outboxkit.errors import ConfigurationError, InvalidMessageError, SchemaMissingError
from outboxkit.message import DEFAULT_MAX_PAYLOAD_BYTES, Message, check_messages
from outboxkit.sharding import shard_of
from outboxkit_mongodb.entries import encode_entry
from outboxkit_mongodb.errors import InvalidWriteError
from outboxkit_mongodb.names import OutboxFields, check_collection, check_field
from outboxkit_mongodb.schema import META_ID, MIGRATE_HINT

__all__ = ["MongoOutbox", "outbox_update"]

Document = Mapping[str, Any]


def outbox_update(fields: OutboxFields, shard: int, messages: Sequence[Message]) -> dict[str, Any]:
    """The update operators that append ``messages`` to a document's outbox with its markers."""
    return {
        "$push": {fields.array: {"$each": [encode_entry(m) for m in messages]}},
        "$set": {fields.pending: True, fields.shard: shard},
        "$min": {fields.since: min(m.created_at for m in messages)},
        "$inc": {fields.seq: len(messages)},
    }


class MongoOutbox:
    """Writes outbox entries into aggregate documents, atomically with the business change.

    The shard count is read from the store's migration (``collection_prefix`` as the store's
    ``--mongodb-collection-prefix``). ``shard_count``, if given, is only checked against it:
    a writer with another count refuses to write.
    """

    def __init__(
        self,
        *,
        shard_count: int | None = None,
        field: str = "outbox",
        aggregate_field: str = "_id",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        collection_prefix: str = "outboxkit_",
    ) -> None:
        if shard_count is not None and shard_count < 1:
            raise InvalidWriteError(f"shard_count must be >= 1, got {shard_count}")
        self._expected_shards = shard_count
        self._shard_counts: dict[str, int] = {}
        self._meta = check_collection(f"{collection_prefix}meta", "collection prefix")
        self.fields = OutboxFields(field)
        """Names of the outbox fields inside aggregate documents."""
        self.aggregate_field = (
            aggregate_field
            if aggregate_field == "_id"
            else check_field(aggregate_field, "aggregate field")
        )
        """The document field holding the aggregate id."""
        self.max_payload_bytes = max_payload_bytes
        """Largest payload accepted, in bytes."""

    # -- the store's shard count ------------------------------------------------------------
    async def load(self, database: AsyncDatabase[Any]) -> int:
        """The shard count that the store's migration fixed in ``database``: read once, kept.

        Raises ``SchemaMissingError`` if the store was not migrated there, and
        ``ConfigurationError`` if this writer was made with another ``shard_count``.
        """
        count = self._shard_counts.get(database.name)
        if count is not None:
            return count
        meta = await database[self._meta].find_one({"_id": META_ID})
        if meta is None:
            raise SchemaMissingError(
                f"MongoOutbox cannot write to database {database.name!r}: the outbox store is "
                f"not migrated there (no {self._meta!r} document), so its shard count is "
                f"unknown: {MIGRATE_HINT}"
            )
        count = int(meta["shard_count"])
        if self._expected_shards is not None and self._expected_shards != count:
            raise ConfigurationError(
                f"MongoOutbox(shard_count={self._expected_shards}) does not match the "
                f"{count} shards the outbox in database {database.name!r} was migrated with: "
                "its entries would never be claimed; drop shard_count (the writer reads it "
                "from the store) or pass the migrated value"
            )
        self._shard_counts[database.name] = count
        return count

    @property
    def shard_count(self) -> int:
        """The store's shard count, once :meth:`load` (or a first write) has read it."""
        if len(self._shard_counts) != 1:
            raise ConfigurationError(
                "MongoOutbox does not know which store's shard count to use: await "
                "outbox.load(database) once before prepare_update (update_one, "
                "find_one_and_update and insert_one load it themselves); use one MongoOutbox "
                "per database"
            )
        return next(iter(self._shard_counts.values()))

    # -- public API -----------------------------------------------------------------------
    def prepare_update(
        self, filter: Document, update: Document, messages: Sequence[Message]
    ) -> dict[str, Any]:
        """The caller's ``update`` merged with the outbox operators; validates everything.

        Use it for writes this class does not wrap (e.g. ``UpdateOne`` in a ``bulk_write``),
        after ``await outbox.load(database)``.
        """
        return self._prepare(filter, update, messages, lambda: self.shard_count)

    def _prepare(
        self,
        filter: Document,
        update: Document,
        messages: Sequence[Message],
        shard_count: Callable[[], int],
    ) -> dict[str, Any]:
        aggregate_id = self._aggregate_id_of_filter(filter)
        combined = self._check_update(update)
        if messages:
            self._check_messages(messages, aggregate_id)
            shard = shard_of(aggregate_id, shard_count())
            for op, args in outbox_update(self.fields, shard, messages).items():
                combined.setdefault(op, {}).update(args)
        if not combined:
            raise InvalidWriteError("nothing to write: the update is empty and no message given")
        return combined

    async def update_one(
        self,
        collection: AsyncCollection[Any],
        filter: Document,
        update: Document,
        messages: Sequence[Message],
        *,
        upsert: bool = False,
        session: AsyncClientSession | None = None,
    ) -> UpdateResult:
        """``collection.update_one`` with ``messages`` appended to the document's outbox.

        If the filter matches no document (and ``upsert`` is false) nothing is written:
        check ``matched_count`` as with a plain update.
        """
        count = await self.load(collection.database)
        combined = self._prepare(filter, update, messages, lambda: count)
        return await collection.update_one(filter, combined, upsert=upsert, session=session)

    async def find_one_and_update(
        self,
        collection: AsyncCollection[Any],
        filter: Document,
        update: Document,
        messages: Sequence[Message],
        *,
        upsert: bool = False,
        return_document: bool = ReturnDocument.BEFORE,
        projection: Mapping[str, Any] | None = None,
        session: AsyncClientSession | None = None,
    ) -> Any:
        """``collection.find_one_and_update`` with ``messages`` appended to the outbox."""
        count = await self.load(collection.database)
        combined = self._prepare(filter, update, messages, lambda: count)
        return await collection.find_one_and_update(
            filter,
            combined,
            projection=projection,
            upsert=upsert,
            return_document=return_document,
            session=session,
        )

    async def insert_one(
        self,
        collection: AsyncCollection[Any],
        document: Document,
        messages: Sequence[Message],
        *,
        session: AsyncClientSession | None = None,
    ) -> InsertOneResult:
        """Insert ``document`` with ``messages`` as its initial outbox.

        The document must carry its aggregate field (``_id`` by default) already, so the
        messages can name their aggregate id.
        """
        if not isinstance(document, Mapping):
            raise InvalidWriteError("document must be a mapping")
        if self.aggregate_field not in document:
            raise InvalidWriteError(
                f"document has no {self.aggregate_field!r}: set it before inserting, so the "
                "messages can carry it as their aggregate id"
            )
        aggregate_id = self._aggregate_id(document[self.aggregate_field])
        clash = sorted(self.fields.reserved & set(document))
        if clash:
            raise InvalidWriteError(
                f"document sets outbox fields {clash}: pass messages instead, outboxkit "
                "maintains these fields"
            )
        full = dict(document)
        if messages:
            self._check_messages(messages, aggregate_id)
            shard = shard_of(aggregate_id, await self.load(collection.database))
            for args in outbox_update(self.fields, shard, messages).values():
                full.update(args)
            full[self.fields.array] = full[self.fields.array]["$each"]
        return await collection.insert_one(full, session=session)

    # -- validation -----------------------------------------------------------------------
    def _aggregate_id(self, value: Any) -> str:
        if isinstance(value, Mapping | list | tuple | bytes) or value is None:
            raise InvalidWriteError(
                f"{self.aggregate_field!r} must be a scalar (str, int, ObjectId, UUID) to "
                f"name an aggregate, got {type(value).__name__}"
            )
        return str(value)

    def _aggregate_id_of_filter(self, filter: Document) -> str:
        name = self.aggregate_field
        hint = (
            f"the filter must select one document by equality on {name!r}, e.g. "
            f"{{{name!r}: order_id}}"
        )
        if not isinstance(filter, Mapping) or name not in filter:
            raise InvalidWriteError(f"{hint}: filters that may match many documents are refused")
        value = filter[name]
        if isinstance(value, Mapping):
            if set(value) != {"$eq"}:
                raise InvalidWriteError(f"{hint}; got the condition {dict(value)!r}")
            value = value["$eq"]
        return self._aggregate_id(value)

    def _check_update(self, update: Document) -> dict[str, dict[str, Any]]:
        if not isinstance(update, Mapping):
            raise InvalidWriteError(
                "update must be a document of update operators ($set, $inc, ...); "
                "aggregation pipelines are not supported"
            )
        combined: dict[str, dict[str, Any]] = {}
        guarded = self.fields.reserved | {self.aggregate_field}
        for op, args in update.items():
            if not op.startswith("$"):
                raise InvalidWriteError(
                    f"update key {op!r} is not an operator: replacement documents are not "
                    "supported, use {'$set': {...}}"
                )
            if not isinstance(args, Mapping):
                raise InvalidWriteError(f"update operator {op} needs a document, got {args!r}")
            paths = list(args) + ([str(v) for v in args.values()] if op == "$rename" else [])
            touched = sorted({p.split(".", 1)[0] for p in paths} & guarded)
            if touched:
                raise InvalidWriteError(
                    f"{op} touches {touched}, which outboxkit maintains (the outbox array, its "
                    "markers and the aggregate field): remove them from the update"
                )
            combined[op] = dict(args)
        return combined

    def _check_messages(self, messages: Sequence[Message], aggregate_id: str) -> None:
        check_messages(messages, self.max_payload_bytes)
        seen: set[Any] = set()
        for message in messages:
            if message.aggregate_id != aggregate_id:
                raise InvalidMessageError(
                    f"message {message.event_type!r} has aggregate id {message.aggregate_id!r} "
                    f"but the document's {self.aggregate_field!r} is {aggregate_id!r}: a "
                    "document's outbox only holds its own aggregate's messages"
                )
            if message.id in seen:
                raise InvalidMessageError(f"message id {message.id} appears twice")
            seen.add(message.id)
