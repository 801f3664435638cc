"""``MongoStore``: the relay side of the embedded outbox (implements ``outboxkit.protocols.Store``).

Fencing: ``ack``, ``retry`` and ``dead_letter`` first check (and touch) the lease document,
then change the aggregate documents. On a replica set or sharded cluster both happen in one
transaction (``fencing == "transaction"``). On servers without transactions (FerretDB 1.x, a
standalone mongod) they are two steps (``fencing == "check-then-write"``): a lease that expires
in the few milliseconds between the check and the single-document updates can still see its
ack applied. That window cannot cause loss: acks remove entries by their stored value, so the
worst case is that the new owner publishes an entry again (a duplicate, as around any fault).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
from pymongo import AsyncMongoClient, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.errors import InvalidURI, OperationFailure, PyMongoError

from outboxkit.closing import CLOSE_TIMEOUT, close_within
from outboxkit.errors import ConfigurationError, DeadLetterNotFoundError, StoreUnavailableError
from outboxkit.masking import mask_url, scrub
from outboxkit.protocols import (
    BLOCKED_SAMPLE,
    DeadLetter,
    DeadLetterPolicy,
    Envelope,
    Lease,
    LeaseInfo,
    StoreStatus,
)
from outboxkit_mongodb.documents import Outboxes, dead_letter_document
from outboxkit_mongodb.entries import as_utc, decode_entry
from outboxkit_mongodb.leases import Leases
from outboxkit_mongodb.names import OutboxFields, check_collection, check_field
from outboxkit_mongodb.schema import Schema
from outboxkit_mongodb.server import ServerInfo, detect
from outboxkit_mongodb.settings import MongoSettings
from outboxkit_mongodb.wakeup import Wakeup

__all__ = ["MongoStore"]

log = logging.getLogger("outboxkit.mongodb")

_REFUSAL_CODES = frozenset({13, 18})
"""Server error codes that trying again will not fix: Unauthorized, AuthenticationFailed."""

Body = Callable[[AsyncClientSession | None, datetime], Awaitable[None]]

DEAD_LETTER_ORDER = [("failed_at", 1), ("_id", 1)]
BLOCKED_BY = "entry.aggregate_id"
"""The aggregate id of a dead letter (its document is blocked while it exists)."""


def connect(settings: MongoSettings) -> AsyncMongoClient[dict[str, Any]]:
    """A client for ``settings.url``; errors name the URL with its password masked."""
    url = settings.url
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigurationError(
            f"mongodb url {mask_url(url)!r} must start with mongodb:// or mongodb+srv://"
        )
    try:
        return AsyncMongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=int(settings.server_selection_timeout * 1000),
            connect=False,
        )
    except (InvalidURI, PyMongoConfigurationError, ValueError) as exc:
        raise ConfigurationError(
            f"bad mongodb url {mask_url(url)!r}: {scrub(str(exc), url)}"
        ) from None


class MongoStore:
    """Relay side of the MongoDB embedded outbox; see the module docs for fencing."""

    def __init__(self, settings: MongoSettings) -> None:
        self.settings = settings
        """The store's settings."""
        self.fields = OutboxFields(settings.outbox_field)
        """Names of the outbox fields inside aggregate documents."""
        if settings.aggregate_field != "_id":
            check_field(settings.aggregate_field, "aggregate field")
        for name in settings.collections:
            check_collection(name, "aggregate collection")
        check_collection(f"{settings.collection_prefix}meta", "collection prefix")
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._shard_count: int | None = None
        self.server: ServerInfo | None = None
        """What the server supports (known after ``open``)."""
        self.wakeup = Wakeup(settings.poll_interval)
        """Wakes the relay's workers when messages are written."""
        self._writes: anyio.CapacityLimiter | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def shard_count(self) -> int:
        if self._shard_count is None:
            raise RuntimeError("MongoStore.shard_count is known after open()")
        return self._shard_count

    @property
    def wakes_every_commit(self) -> bool:
        """False: :meth:`wait` names no shard, so workers claim again after a short batch."""
        return False

    @property
    def fencing(self) -> str:
        """``"transaction"`` or ``"check-then-write"`` (known after open/migrate)."""
        return self.server.fencing if self.server else "unknown"

    async def _connect(self) -> Schema:
        if self._client is None:
            self._client = connect(self.settings)
        db = self._client[self.settings.database]
        try:
            self.server = await detect(db)
        except PyMongoError as exc:
            await self.close()
            refused = isinstance(exc, PyMongoConfigurationError) or (
                isinstance(exc, OperationFailure) and exc.code in _REFUSAL_CODES
            )
            raise StoreUnavailableError(
                f"cannot reach the MongoDB server at {mask_url(self.settings.url)}: "
                f"{scrub(str(exc), self.settings.url)}",
                retriable=not refused,
            ) from None
        schema = Schema(
            db,
            self.fields,
            tuple(self.settings.collections),
            self.settings.collection_prefix,
            self.server.statements_per_command,
        )
        self._schema = schema
        self._leases = Leases(db, schema)
        limit = self.server.concurrent_writes
        self._writes = anyio.CapacityLimiter(limit) if limit else None
        self._outboxes = Outboxes(schema)
        return schema

    async def open(self) -> None:
        if not self.settings.collections:
            raise ConfigurationError(
                "no aggregate collections configured: set --mongodb-collections (e.g. "
                "orders,customers) to the collections whose documents hold outboxes"
            )
        schema = await self._connect()
        self._shard_count = await schema.check()
        await self.wakeup.start(
            schema.db, list(schema.collections), self.fields, self.settings.change_streams
        )
        assert self.server is not None
        log.info(
            "mongodb store open: %s, %d shards, fencing by %s, wake-up by %s",
            self.server.description,
            self._shard_count,
            self.server.fencing,
            self.wakeup.mode,
        )

    async def close(self) -> None:
        """Close the change stream and the client, within
        :data:`~outboxkit.closing.CLOSE_TIMEOUT` seconds. Idempotent."""
        client, self._client = self._client, None

        async def close() -> None:
            await self.wakeup.close()
            if client is not None:
                await client.close()

        with anyio.CancelScope(shield=True):
            if not await close_within(close, CLOSE_TIMEOUT):
                log.warning("the MongoDB client did not close within %gs: gave up", CLOSE_TIMEOUT)

    async def migrate(self, shard_count: int | None = None) -> None:
        schema = await self._connect()
        self._shard_count = await schema.migrate(shard_count or self.settings.shard_count)

    # -- leases ---------------------------------------------------------------------------
    async def heartbeat(self, owner: str, ttl: float) -> list[str]:
        return await self._leases.heartbeat(owner, ttl)

    async def leave(self, owner: str) -> None:
        await self._leases.leave(owner)

    async def leases(self) -> list[LeaseInfo]:
        return await self._leases.all()

    async def acquire(self, owner: str, shard: int, ttl: float) -> Lease | None:
        if not 0 <= shard < self.shard_count:
            raise ValueError(f"shard {shard} is out of range 0..{self.shard_count - 1}")
        return await self._leases.acquire(owner, shard, ttl)

    async def renew(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        return await self._leases.renew(leases, ttl)

    async def release(self, leases: Sequence[Lease]) -> None:
        await self._leases.release(leases)

    # -- messages -------------------------------------------------------------------------
    async def claim(
        self, lease: Lease, limit: int, *, on_dead_letter: DeadLetterPolicy = "block"
    ) -> list[Envelope]:
        if limit < 1:
            return []
        now = await self._leases.now()
        return await self._outboxes.claim(lease.shard, limit, now, on_dead_letter == "block")

    async def _fenced(self, lease: Lease, body: Body) -> None:
        """Run ``body`` only while ``lease`` is held (in one transaction where supported),
        within the server's limit of concurrent writes."""
        async with self._writes or nullcontext():
            await self._fenced_now(lease, body)

    async def _fenced_now(self, lease: Lease, body: Body) -> None:
        if self.server is not None and self.server.transactions:
            assert self._client is not None
            async with self._client.start_session() as session:

                async def run(s: AsyncClientSession) -> None:
                    await body(s, await self._leases.fence(lease, s))

                await session.with_transaction(run)
        else:
            await body(None, await self._leases.fence(lease, None))

    async def ack(self, lease: Lease, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return

        async def body(session: AsyncClientSession | None, now: datetime) -> None:
            await self._outboxes.remove(envelopes, session)

        await self._fenced(lease, body)

    async def retry(
        self, lease: Lease, envelopes: Sequence[Envelope], error: str, delay: float
    ) -> None:
        if not envelopes:
            return

        async def body(session: AsyncClientSession | None, now: datetime) -> None:
            due = now + timedelta(seconds=max(0.0, delay))
            await self._outboxes.reschedule(envelopes, error, due, session)

        await self._fenced(lease, body)

    async def dead_letter(self, lease: Lease, envelopes: Sequence[Envelope], error: str) -> None:
        if not envelopes:
            return

        async def body(session: AsyncClientSession | None, now: datetime) -> None:
            ops = [
                ReplaceOne(key, doc, upsert=True)
                for key, doc in (dead_letter_document(e, error, now) for e in envelopes)
            ]
            await self._schema.bulk_write(self._schema.dead_letters, ops, session)
            await self._outboxes.remove(envelopes, session, dead=True)

        await self._fenced(lease, body)

    async def wait(self, timeout: float) -> None:
        await self.wakeup.wait(timeout)

    # -- operations -----------------------------------------------------------------------
    async def status(self) -> StoreStatus:
        now = await self._leases.now()
        pending, oldest_age, parked = await self._outboxes.backlog(now)
        blocked = sorted(str(a) for a in await self._schema.dead_letters.distinct(BLOCKED_BY))
        return StoreStatus(
            pending=pending,
            oldest_pending_age=oldest_age,
            dead_letters=await self._schema.dead_letters.count_documents({}),
            shard_count=self.shard_count,
            instances=sorted(
                str(d["_id"])
                for d in await self._schema.instances.find(
                    {"expires_at": {"$gt": now}}, {"_id": 1}
                ).to_list()
            ),
            leases=await self._leases.all(),
            blocked_aggregates=len(blocked),
            blocked_sample=blocked[:BLOCKED_SAMPLE],
            parked=parked,
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        docs = (
            await self._schema.dead_letters.find({}).sort(DEAD_LETTER_ORDER).limit(limit).to_list()
        )
        return [
            DeadLetter(
                message=decode_entry(doc["entry"]),
                shard=int(doc["shard"]),
                error=str(doc["error"]),
                attempts=int(doc["attempts"]),
                failed_at=as_utc(doc["failed_at"]),
            )
            for doc in docs
        ]

    async def _chosen(self, ids: Sequence[UUID] | None) -> list[dict[str, Any]]:
        """The dead-letter documents ``ids`` (all if None), oldest first; raise
        ``DeadLetterNotFoundError`` if any of ``ids`` is not a dead letter."""
        wanted = None if ids is None else [str(i) for i in dict.fromkeys(ids)]
        query: dict[str, Any] = {} if wanted is None else {"_id": {"$in": wanted}}
        docs = await self._schema.dead_letters.find(query).sort(DEAD_LETTER_ORDER).to_list()
        found = {str(doc["_id"]) for doc in docs}
        missing = [UUID(i) for i in wanted or [] if i not in found]
        if missing:
            raise DeadLetterNotFoundError(missing)
        return docs

    async def replay(self, ids: Sequence[UUID] | None = None) -> int:
        """Put dead letters (all if ``ids`` is None) back where they were in their
        documents' outboxes (before the entries written after them); none if an id is not
        a dead letter. A dead letter whose document no longer exists stays (logged)."""
        replayed = 0
        for (collection, doc_id, shard), docs in _by_document(await self._chosen(ids)):
            messages = [decode_entry(doc["entry"]) for doc in docs]
            if await self._outboxes.put_back(collection, doc_id, shard, messages):
                await self._schema.dead_letters.delete_many({"_id": {"$in": _ids(docs)}})
                replayed += len(docs)
            else:
                log.warning(
                    "dead letters %s not replayed: document %r of %r no longer exists",
                    ", ".join(_ids(docs)),
                    doc_id,
                    collection,
                )
        return replayed

    async def discard(self, ids: Sequence[UUID] | None = None) -> int:
        """Delete dead letters (all if ``ids`` is None) and unblock their documents; none if
        an id is not a dead letter."""
        return await self._discard(await self._chosen(ids))

    async def purge(self, older_than: float) -> int:
        """Delete the dead letters that failed more than ``older_than`` s ago."""
        cutoff = await self._leases.now() - timedelta(seconds=older_than)
        found = self._schema.dead_letters.find({"failed_at": {"$lt": cutoff}})
        return await self._discard(await found.sort(DEAD_LETTER_ORDER).to_list())

    async def _discard(self, docs: Sequence[dict[str, Any]]) -> int:
        # Unblock first: a crash in between leaves a dead letter to discard again, never a
        # document blocked by a dead letter that no longer exists.
        for (collection, doc_id, _), letters in _by_document(docs):
            await self._outboxes.forget_dead(collection, doc_id, _ids(letters))
        if not docs:
            return 0
        result = await self._schema.dead_letters.delete_many({"_id": {"$in": _ids(docs)}})
        return int(result.deleted_count)


def _ids(docs: Sequence[dict[str, Any]]) -> list[str]:
    return [str(doc["_id"]) for doc in docs]


def _by_document(
    docs: Sequence[dict[str, Any]],
) -> list[tuple[tuple[str, Any, int], list[dict[str, Any]]]]:
    """Dead-letter documents grouped by (collection, document id, shard), order kept."""
    grouped: dict[tuple[str, str], tuple[tuple[str, Any, int], list[dict[str, Any]]]] = {}
    for doc in docs:
        where = (str(doc["collection"]), doc["doc_id"], int(doc["shard"]))
        grouped.setdefault((where[0], repr(where[1])), (where, []))[1].append(doc)
    return list(grouped.values())
