"""The store's collections and indexes: created by ``migrate``, checked by ``open``.

* ``<prefix>meta``: one document ``{_id: "outboxkit", shard_count, schema_version}``;
* ``<prefix>leases``: one document per shard ``{_id: shard, owner, token, expires_at}``;
* ``<prefix>lease_claims``: ``{_id: "<shard>:<token>", shard, token, owner, expires_at}``, one
  per takeover, so that one owner wins a token even where concurrent updates of one document
  are lost (see ``outboxkit_mongodb.leases``); created by the first takeover if missing;
* ``<prefix>instances``: relay heartbeats ``{_id: owner, expires_at}``;
* ``<prefix>dead_letters``: ``{_id: message id, entry, collection, doc_id, shard, error, ...}``;
* on every aggregate collection, the sparse claim index ``(<f>_shard, <f>_pending, <f>_since)``:
  only documents with pending entries carry these keys, so it stays as small as the backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, DuplicateKeyError

from outboxkit.errors import SchemaMissingError
from outboxkit_mongodb.bulk import bulk_write
from outboxkit_mongodb.names import OutboxFields, check_collection

__all__ = ["SCHEMA_VERSION", "Schema"]

SCHEMA_VERSION = 1
META_ID = "outboxkit"
MIGRATE_HINT = "run `outboxkit migrate --store mongodb` (with the same --mongodb-* settings)"


@dataclass(frozen=True)
class Schema:
    """Names of the store's collections in one database."""

    db: AsyncDatabase[Any]
    fields: OutboxFields
    collections: tuple[str, ...]
    prefix: str = "outboxkit_"
    per_command: int | None = None
    """Most statements per write command (see ``outboxkit_mongodb.bulk``)."""

    def __post_init__(self) -> None:
        for name in self.collections:
            check_collection(name, "aggregate collection")
        check_collection(f"{self.prefix}meta", "collection prefix")

    async def bulk_write(
        self,
        coll: AsyncCollection[Any],
        ops: Sequence[UpdateOne | ReplaceOne[Any]],
        session: AsyncClientSession | None = None,
    ) -> int:
        """``ops`` on ``coll``, unordered, in commands of at most :attr:`per_command`
        statements; the documents matched."""
        return await bulk_write(coll, ops, per_command=self.per_command, session=session)

    @property
    def meta(self) -> AsyncCollection[Any]:
        return self.db[f"{self.prefix}meta"]

    @property
    def leases(self) -> AsyncCollection[Any]:
        return self.db[f"{self.prefix}leases"]

    @property
    def lease_claims(self) -> AsyncCollection[Any]:
        return self.db[f"{self.prefix}lease_claims"]

    @property
    def instances(self) -> AsyncCollection[Any]:
        return self.db[f"{self.prefix}instances"]

    @property
    def dead_letters(self) -> AsyncCollection[Any]:
        return self.db[f"{self.prefix}dead_letters"]

    def aggregates(self, name: str) -> AsyncCollection[Any]:
        return self.db[name]

    async def migrate(self, shard_count: int) -> int:
        """Create what is missing; return the stored shard count (fixed at first run)."""
        existing = set(await self.db.list_collection_names())
        own = (self.meta, self.leases, self.lease_claims, self.instances, self.dead_letters)
        for coll in (*own, *(self.aggregates(n) for n in self.collections)):
            if coll.name not in existing:
                with suppress(CollectionInvalid):  # created concurrently
                    await self.db.create_collection(coll.name)
        meta = await self.meta.find_one({"_id": META_ID})
        if meta is None:
            with suppress(DuplicateKeyError):  # another migrate won: use its shard count
                await self.meta.insert_one(
                    {"_id": META_ID, "shard_count": shard_count, "schema_version": SCHEMA_VERSION}
                )
            meta = await self.meta.find_one({"_id": META_ID})
        assert meta is not None
        stored = int(meta["shard_count"])
        await self.bulk_write(
            self.leases,
            [
                UpdateOne(
                    {"_id": shard},
                    {"$setOnInsert": {"owner": None, "token": 0, "expires_at": None}},
                    upsert=True,
                )
                for shard in range(stored)
            ],
        )
        await self.instances.create_index([("expires_at", ASCENDING)], name="expires_at")
        await self.dead_letters.create_index(
            [("failed_at", ASCENDING), ("_id", ASCENDING)], name="failed_at"
        )
        for name in self.collections:
            await self.aggregates(name).create_index(
                self.fields.claim_index, name=self.fields.claim_index_name, sparse=True
            )
        return stored

    async def check(self) -> int:
        """Raise :class:`SchemaMissingError` if anything is missing; return the shard count."""
        meta = await self.meta.find_one({"_id": META_ID})
        if meta is None:
            raise SchemaMissingError(
                f"the outboxkit collections are missing in database {self.db.name!r} "
                f"(no {self.meta.name!r} document): {MIGRATE_HINT}"
            )
        if int(meta.get("schema_version", 0)) < SCHEMA_VERSION:
            raise SchemaMissingError(f"the outboxkit schema is outdated: {MIGRATE_HINT}")
        shard_count = int(meta["shard_count"])
        if await self.leases.count_documents({}) < shard_count:
            raise SchemaMissingError(f"the lease documents are incomplete: {MIGRATE_HINT}")
        for name in self.collections:
            indexes = await self.aggregates(name).index_information()
            if self.fields.claim_index_name not in indexes:
                raise SchemaMissingError(
                    f"collection {name!r} has no claim index {self.fields.claim_index_name!r} "
                    f"(so claiming would scan the collection): {MIGRATE_HINT}"
                )
        return shard_count
