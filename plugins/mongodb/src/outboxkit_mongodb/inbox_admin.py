"""Operations on MongoDB inboxes: ``outboxkit inbox migrate|prune|status --inbox mongodb``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import PyMongoError

from outboxkit.errors import ConfigurationError, StoreUnavailableError
from outboxkit.inbox.contract import InboxPlugin
from outboxkit.masking import mask_url
from outboxkit_mongodb.names import check_collection, check_field
from outboxkit_mongodb.settings import MongoSettings
from outboxkit_mongodb.store import connect

__all__ = ["MongoInboxAdmin", "MongoInboxSettings", "plugin"]


class MongoInboxSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where a consumer's inboxes live (flags ``--mongodb-inbox-*``)."""

    url: Annotated[
        str,
        msgspec.Meta(description="MongoDB connection string", extra={"secret": True}),
    ] = "mongodb://127.0.0.1:27017"
    database: Annotated[str, msgspec.Meta(description="the consumer's database")] = "outboxkit"
    collections: Annotated[
        list[str], msgspec.Meta(description="collections whose documents hold an inbox field")
    ] = msgspec.field(default_factory=list)
    field: Annotated[str, msgspec.Meta(description="the inbox field of those documents")] = "inbox"
    parked_collection: Annotated[
        str, msgspec.Meta(description="collection of parked messages (guard=park)")
    ] = "outboxkit_inbox_parked"
    server_selection_timeout: Annotated[
        float, msgspec.Meta(gt=0, description="seconds to wait for a reachable server")
    ] = 10.0


def _written_at(text: str) -> float | None:
    """The UUIDv7 time of an id, in seconds (None for other ids: never pruned)."""
    try:
        value = UUID(text)
    except ValueError:
        return None
    return (value.int >> 80) / 1000 if value.version == 7 else None


class MongoInboxAdmin:
    """Prunes old ids from the inbox fields of the configured collections."""

    def __init__(self, settings: MongoInboxSettings) -> None:
        self.settings = settings
        """Where the inboxes live."""
        for name in (*settings.collections, settings.parked_collection):
            check_collection(name, "collection")
        check_field(settings.field, "inbox field")
        self._client: AsyncMongoClient[dict[str, Any]] | None = None

    async def open(self) -> None:
        """Connect and ping the server."""
        if not self.settings.collections:
            raise ConfigurationError(
                "name the collections holding inboxes: --mongodb-inbox-collections a,b"
            )
        s = self.settings
        client = connect(
            MongoSettings(url=s.url, server_selection_timeout=s.server_selection_timeout)
        )
        try:
            await client.admin.command("ping")
        except PyMongoError as exc:
            await client.close()
            raise StoreUnavailableError(
                f"cannot reach MongoDB at {mask_url(s.url)}: {type(exc).__name__}"
            ) from None
        self._client = client

    async def close(self) -> None:
        """Disconnect. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _db(self) -> Any:
        if self._client is None:
            raise StoreUnavailableError("the inbox admin is not open: call open() first")
        return self._client[self.settings.database]

    async def migrate(self) -> None:
        """Nothing to create but the parked collection: the inboxes are fields."""
        db = self._db()
        if self.settings.parked_collection not in await db.list_collection_names():
            await db.create_collection(self.settings.parked_collection)

    async def prune(self, older_than: float, batch_size: int) -> int:
        """``$pullAll`` the ids written over ``older_than`` s ago, ``batch_size`` documents
        per bulk write."""
        cutoff = datetime.now(UTC).timestamp() - older_than
        field, removed = self.settings.field, 0
        for name in self.settings.collections:
            coll = self._db()[name]
            batch: list[UpdateOne] = []
            async for doc in coll.find({field: {"$exists": True}}, {field: 1}):
                old = [i for i in doc.get(field) or [] if (_written_at(i) or cutoff) < cutoff]
                if old:
                    batch.append(UpdateOne({"_id": doc["_id"]}, {"$pullAll": {field: old}}))
                    removed += len(old)
                if len(batch) >= batch_size:
                    await coll.bulk_write(batch, ordered=False)
                    batch = []
            if batch:
                await coll.bulk_write(batch, ordered=False)
        return removed

    async def counts(self) -> dict[str, int]:
        """Processed ids, documents holding some, parked messages."""
        field, db = self.settings.field, self._db()
        processed = documents = 0
        for name in self.settings.collections:
            async for doc in db[name].find({field: {"$exists": True}}, {field: 1}):
                documents += 1
                processed += len(doc.get(field) or [])
        parked = await db[self.settings.parked_collection].count_documents({})
        return {"processed": processed, "documents": documents, "parked": parked}


plugin = InboxPlugin(
    name="mongodb",
    settings_type=MongoInboxSettings,
    create=MongoInboxAdmin,
    summary="inbox fields of MongoDB documents",
)
"""The ``mongodb`` inbox plugin (entry point ``outboxkit.inboxes``)."""
