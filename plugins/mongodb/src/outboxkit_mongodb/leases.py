"""Shard leases with fencing tokens, and relay instance heartbeats, in the store's database.

Every time comes from the server clock (:func:`server_now`) read just before the write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from outboxkit.errors import LeaseLostError
from outboxkit.protocols import Lease, LeaseInfo
from outboxkit_mongodb.entries import as_utc
from outboxkit_mongodb.schema import Schema
from outboxkit_mongodb.server import server_now

__all__ = ["Leases"]


def _held(lease: Lease, now: datetime) -> dict[str, Any]:
    return {
        "_id": lease.shard,
        "owner": lease.owner,
        "token": lease.token,
        "expires_at": {"$gt": now},
    }


class Leases:
    """Lease and instance documents of one store."""

    def __init__(self, db: AsyncDatabase[Any], schema: Schema) -> None:
        self._db = db
        self._schema = schema

    async def now(self) -> datetime:
        return await server_now(self._db)

    async def heartbeat(self, owner: str, ttl: float) -> list[str]:
        now = await self.now()
        instances = self._schema.instances
        await instances.update_one(
            {"_id": owner}, {"$set": {"expires_at": now + timedelta(seconds=ttl)}}, upsert=True
        )
        await instances.delete_many({"expires_at": {"$lte": now}})
        live = await instances.find({"expires_at": {"$gt": now}}, {"_id": 1}).to_list()
        return sorted(str(doc["_id"]) for doc in live)

    async def leave(self, owner: str) -> None:
        await self._schema.instances.delete_one({"_id": owner})

    async def all(self) -> list[LeaseInfo]:
        now = await self.now()
        docs = await self._schema.leases.find({}).sort("_id", 1).to_list()
        return [
            LeaseInfo(
                shard=int(doc["_id"]),
                owner=doc.get("owner"),
                token=int(doc.get("token", 0)),
                expires_in=(
                    (as_utc(doc["expires_at"]) - now).total_seconds()
                    if doc.get("owner") is not None and doc.get("expires_at") is not None
                    else None
                ),
            )
            for doc in docs
        ]

    async def acquire(self, owner: str, shard: int, ttl: float) -> Lease | None:
        now = await self.now()
        expires = now + timedelta(seconds=ttl)
        extended = await self._schema.leases.find_one_and_update(
            {"_id": shard, "owner": owner, "expires_at": {"$gt": now}},
            {"$set": {"expires_at": expires}},
            return_document=ReturnDocument.AFTER,
        )
        if extended is not None:
            return Lease(shard=shard, owner=owner, token=int(extended["token"]))
        return await self._take(owner, shard, now, expires)

    async def _take(self, owner: str, shard: int, now: datetime, expires: datetime) -> Lease | None:
        """Take a free or expired lease with the next token, which one owner alone claims.

        The token is claimed by inserting ``<shard>:<token>`` into ``lease_claims``: a unique
        key, so of owners racing for the shard exactly one gets it, also on servers that lose
        concurrent updates of one document (FerretDB 1.x). A claim whose owner died before
        updating the lease expires with the ttl it asked for.
        """
        free = await self._schema.leases.find_one(
            {"_id": shard, "$or": [{"owner": None}, {"expires_at": {"$lte": now}}]}
        )
        if free is None:
            return None
        token = int(free.get("token", 0)) + 1
        claims = self._schema.lease_claims
        claim = f"{shard}:{token}"
        doc = {"_id": claim, "shard": shard, "token": token, "owner": owner, "expires_at": expires}
        try:
            await claims.insert_one(doc)
        except DuplicateKeyError:
            await claims.delete_one({"_id": claim, "expires_at": {"$lte": now}})
            return None
        taken = await self._schema.leases.update_one(
            {"_id": shard, "token": token - 1},
            {"$set": {"owner": owner, "expires_at": expires, "token": token}},
        )
        await claims.delete_many({"shard": shard, "token": {"$lt": token}})
        if not taken.matched_count:
            return None
        return Lease(shard=shard, owner=owner, token=token)

    async def renew(self, held: Sequence[Lease], ttl: float) -> list[Lease]:
        now = await self.now()
        expires = now + timedelta(seconds=ttl)
        kept = []
        for lease in held:
            result = await self._schema.leases.update_one(
                _held(lease, now), {"$set": {"expires_at": expires}}
            )
            if result.matched_count:
                kept.append(lease)
        return kept

    async def release(self, held: Sequence[Lease]) -> None:
        for lease in held:
            await self._schema.leases.update_one(
                {"_id": lease.shard, "owner": lease.owner, "token": lease.token},
                {"$set": {"owner": None, "expires_at": None}},
            )

    async def fence(self, lease: Lease, session: AsyncClientSession | None) -> datetime:
        """Check ``lease`` is held, unexpired, same token; return the server time used.

        Inside a transaction the check writes the lease document (``$inc fenced``), so a
        concurrent takeover conflicts with it instead of slipping past a read. Without one it
        only reads: a write would buy nothing there, and on servers that lose concurrent
        updates (FerretDB 1.x) it could undo a concurrent takeover.
        """
        now = await self.now()
        if session is not None:
            result = await self._schema.leases.update_one(
                _held(lease, now), {"$inc": {"fenced": 1}}, session=session
            )
            held = result.matched_count > 0
        else:
            held = await self._schema.leases.find_one(_held(lease, now), {"_id": 1}) is not None
        if not held:
            raise LeaseLostError.not_held(lease)
        return now
