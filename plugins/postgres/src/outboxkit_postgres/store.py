"""The relay side of the ``pg`` store."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import anyio
import asyncpg

from outboxkit.closing import CLOSE_TIMEOUT
from outboxkit.errors import (
    ConfigurationError,
    DeadLetterNotFoundError,
    LeaseLostError,
    SchemaMissingError,
    StoreUnavailableError,
)
from outboxkit.masking import mask_dsn, scrub
from outboxkit.protocols import (
    BLOCKED_SAMPLE,
    DeadLetter,
    DeadLetterPolicy,
    Envelope,
    Lease,
    LeaseInfo,
    StoreGauges,
    StoreStatus,
)
from outboxkit_postgres.codec import dead_letter_from_row, envelope_from_row
from outboxkit_postgres.listener import Listener
from outboxkit_postgres.merging import TurnMerger
from outboxkit_postgres.migrations import LATEST_VERSION, migrate
from outboxkit_postgres.names import OutboxNames, query_texts
from outboxkit_postgres.privileges import check_relay
from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.tls import ssl_option

__all__ = ["PostgresStore"]


_REFUSALS = (
    asyncpg.InvalidAuthorizationSpecificationError,  # unknown role, wrong password, pg_hba
    asyncpg.InvalidCatalogNameError,  # unknown database
    asyncpg.ClientConfigurationError,
    ssl.SSLCertVerificationError,
    ValueError,  # a malformed DSN
)
"""Connection errors that trying again will not fix: ``retriable=False``."""
_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError)


def _lease_arrays(leases: Sequence[Lease]) -> tuple[list[int], list[str], list[int]]:
    return [x.shard for x in leases], [x.owner for x in leases], [x.token for x in leases]


_UNSET = object()


def _tls_hint(exc: BaseException) -> str:
    """What to do about a TLS failure (empty for other errors)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            " (the server's certificate did not verify: give --pg-ssl-root-cert the CA that "
            "signed it; verify-full also needs the DSN's host named in it)"
        )
    if "rejected SSL upgrade" in str(exc):
        return " (the server does not accept TLS: turn ssl on there, or lower --pg-ssl-mode)"
    return ""


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset hook: skip asyncpg's default reset query (a round trip on every release).

    The store's statements never change session state (no SET, LISTEN, cursors or session
    advisory locks); asyncpg still rolls back a transaction left open before calling this.
    """


class PostgresStore:
    """:class:`~outboxkit.protocols.Store` on a PostgreSQL outbox table (asyncpg).

    Messages are claimed through the ``(shard, seq)`` primary key; acks, retries and dead
    letters are single statements that lock and check the lease row first (fencing).
    Lease and heartbeat calls use a pool of their own, so busy claims never starve them.
    """

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        self._settings = settings or PostgresSettings()
        self._names = OutboxNames(self._settings.schema, self._settings.table)
        texts = dict(query_texts())
        after_dead_letter = self._names.render(texts.pop("after_dead_letter"))
        self._q = {
            name: self._names.render(sql, after_dead_letter=after_dead_letter)
            for name, sql in texts.items()
        }
        self._q_skip = {  # the claims with on_dead_letter=skip
            name: self._names.render(texts[name], after_dead_letter="")
            for name in ("claim", "claim_shards")
        }
        self._pool: asyncpg.Pool | None = None
        self._lease_pool: asyncpg.Pool | None = None
        self._listener: Listener | None = None
        self._ssl_option: object = _UNSET
        self._shard_count: int | None = None
        self._claims = TurnMerger[tuple[int, bool], list[Any]](self._claim_one, self._claim_many)
        self._acks = TurnMerger[tuple[Lease, list[int]], bool](self._ack_one, self._ack_many)

    @property
    def shard_count(self) -> int:
        """The shard count fixed at migration (after :meth:`open` or :meth:`migrate`)."""
        if self._shard_count is None:
            raise RuntimeError("PostgresStore.shard_count is known after open()")
        return self._shard_count

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        dsn = self._settings.dsn
        refused = isinstance(exc, _REFUSALS)
        return StoreUnavailableError(
            f"cannot connect to PostgreSQL at {mask_dsn(dsn)}: "
            f"{type(exc).__name__}: {scrub(str(exc), dsn)}"
            + (
                _tls_hint(exc)
                or ("; check the user, password and database of the DSN" if refused else "")
            ),
            retriable=not refused,
        )

    def _ssl(self) -> ssl.SSLContext | str | None:
        """The ``ssl`` argument of every connection (built once: files are read once)."""
        if self._ssl_option is _UNSET:
            self._ssl_option = ssl_option(self._settings)
        return self._ssl_option  # type: ignore[return-value]

    async def _connect(self) -> asyncpg.Connection:
        tls = self._ssl()
        try:
            return await asyncpg.connect(
                self._settings.dsn, timeout=self._settings.connect_timeout, ssl=tls
            )
        except _CONNECT_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def _create_pool(
        self, min_size: int, max_size: int, server_settings: dict[str, str] | None = None
    ) -> asyncpg.Pool:
        tls = self._ssl()
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                self._settings.dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=self._settings.connect_timeout,
                ssl=tls,
                server_settings=server_settings,
                reset=_keep_session,
            )
        except _CONNECT_ERRORS as exc:
            raise self._unavailable(exc) from None
        return pool

    async def migrate(self, shard_count: int | None = None) -> None:
        """Create or upgrade the schema (re-runnable); the first run fixes the shard count."""
        conn = await self._connect()
        try:
            self._shard_count = await migrate(
                conn, self._names, shard_count or self._settings.shard_count
            )
        finally:
            await conn.close()

    async def open(self) -> None:
        """Connect and check the schema and the role's privileges.

        Raises ``SchemaMissingError`` (run migrate) or ``ConfigurationError`` naming the
        privileges the role lacks, before anything is written.
        """
        if self._settings.pool_min > self._settings.pool_max:
            raise ConfigurationError("pg pool_min must not exceed pool_max")
        conn = await self._connect()
        try:
            await check_relay(conn, self._names)
            version = await conn.fetchval(self._q["schema_version"])
            self._shard_count = await conn.fetchval(self._q["shard_count"])
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            raise SchemaMissingError(
                f"outbox {self._names.qualified} does not exist: run `outboxkit migrate --store pg`"
            ) from None
        finally:
            await conn.close()
        if version is None or int(version) < LATEST_VERSION:
            raise SchemaMissingError(
                f"outbox {self._names.qualified} is at schema version {version}, "
                f"this outboxkit needs {LATEST_VERSION}: run `outboxkit migrate --store pg`"
            )
        # Claims, acks, retries and dead letters commit asynchronously: no WAL flush per
        # batch. A server crash can forget the last few hundred milliseconds of them, and
        # then those messages are published again (in order: acks are WAL-ordered) -- a
        # duplicate under a fault, never a loss. Leases and operator commands stay durable.
        self._pool = await self._create_pool(
            self._settings.pool_min, self._settings.pool_max, {"synchronous_commit": "off"}
        )
        self._lease_pool = await self._create_pool(1, 2)
        if self._settings.notify:
            self._listener = Listener(
                self._settings.dsn,
                self._names.channel,
                self._settings.connect_timeout,
                ssl=self._ssl(),
            )

    async def close(self) -> None:
        """Close the pools and the LISTEN connection, cutting the connections that are not
        closed within :data:`~outboxkit.closing.CLOSE_TIMEOUT` seconds. Idempotent."""
        listener, self._listener = self._listener, None
        pools = [p for p in (self._pool, self._lease_pool) if p is not None]
        self._pool = self._lease_pool = None
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(CLOSE_TIMEOUT):  # asyncpg cuts what it was closing
                await self._claims.close()
                await self._acks.close()
                if listener is not None:
                    await listener.close()
                for pool in pools:
                    await pool.close()
            for pool in pools:
                pool.terminate()  # those not closed yet

    def _main(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open: call open() first")
        return self._pool

    def _leasing(self) -> asyncpg.Pool:
        """The small durable pool (synchronous commit): leases and operator commands."""
        if self._lease_pool is None:
            raise RuntimeError("PostgresStore is not open: call open() first")
        return self._lease_pool

    # -- instances and leases ---------------------------------------------------------------
    async def heartbeat(self, owner: str, ttl: float) -> list[str]:
        """Mark ``owner`` alive for ``ttl`` s (database clock); return the live instances."""
        rows = await self._leasing().fetch(self._q["heartbeat"], owner, ttl)
        return [row["owner"] for row in rows]

    async def leave(self, owner: str) -> None:
        """Unregister ``owner`` (and forget instances dead for over an hour)."""
        await self._leasing().execute(self._q["leave"], owner)

    async def leases(self) -> list[LeaseInfo]:
        """One row per shard."""
        rows = await self._leasing().fetch(self._q["leases"])
        return [
            LeaseInfo(
                shard=r["shard"], owner=r["owner"], token=r["token"], expires_in=r["expires_in"]
            )
            for r in rows
        ]

    async def acquire(self, owner: str, shard: int, ttl: float) -> Lease | None:
        """Take a free or expired shard (new token) or extend our own; None if held."""
        token = await self._leasing().fetchval(self._q["acquire"], shard, owner, ttl)
        return None if token is None else Lease(shard=shard, owner=owner, token=token)

    async def renew(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """Extend the leases still held; return them."""
        if not leases:
            return []
        rows = await self._leasing().fetch(self._q["renew"], *_lease_arrays(leases), ttl)
        return [Lease(shard=r["shard"], owner=r["owner"], token=r["token"]) for r in rows]

    async def release(self, leases: Sequence[Lease]) -> None:
        """Free the leases still held with the same token."""
        if leases:
            await self._leasing().execute(self._q["release"], *_lease_arrays(leases))

    # -- messages ---------------------------------------------------------------------------
    async def claim(
        self, lease: Lease, limit: int, *, on_dead_letter: DeadLetterPolicy = "block"
    ) -> list[Envelope]:
        """Due messages of the shard in sequence order; aggregates in backoff are skipped,
        and with ``block`` so are the rows after a dead letter of their aggregate.

        Claims that shard workers start in the same event-loop turn share one query.
        """
        block = on_dead_letter == "block"
        rows = await self._claims.submit(lease.shard, (limit, block))
        return [envelope_from_row(row, lease.shard) for row in rows]

    def _claim_query(self, name: str, block: bool) -> str:
        return (self._q if block else self._q_skip)[name]

    async def _claim_one(self, shard: int, request: tuple[int, bool]) -> list[Any]:
        limit, block = request
        rows: list[Any] = await self._main().fetch(self._claim_query("claim", block), shard, limit)
        return rows

    async def _claim_many(
        self, requests: Sequence[tuple[int, tuple[int, bool]]]
    ) -> dict[int, list[Any]]:
        found: dict[int, list[Any]] = {shard: [] for shard, _ in requests}
        for block in sorted({block for _, (_, block) in requests}):  # one policy per relay
            chosen = [(shard, limit) for shard, (limit, b) in requests if b == block]
            rows = await self._main().fetch(
                self._claim_query("claim_shards", block),
                [shard for shard, _ in chosen],
                [limit for _, limit in chosen],
            )
            for row in rows:
                found[row["shard"]].append(row)
        return found

    async def _held(self, query: str, lease: Lease, seqs: list[int], *args: Any) -> bool:
        """Run a fenced single-shard statement; False if the lease was not held."""
        row = await self._main().fetchrow(
            self._q[query], lease.shard, lease.owner, lease.token, seqs, *args
        )
        return row is not None and row["held"] > 0

    async def _fenced(
        self, query: str, lease: Lease, envelopes: Sequence[Envelope], *args: Any
    ) -> None:
        if envelopes and not await self._held(query, lease, [e.position for e in envelopes], *args):
            raise LeaseLostError.not_held(lease, query)

    async def ack(self, lease: Lease, envelopes: Sequence[Envelope]) -> None:
        """Delete published messages (fenced).

        Acks that shard workers make in the same event-loop turn share one statement.
        """
        if not envelopes:
            return
        if not await self._acks.submit(lease.shard, (lease, [e.position for e in envelopes])):
            raise LeaseLostError.not_held(lease, "ack")

    async def _ack_one(self, _shard: int, request: tuple[Lease, list[int]]) -> bool:
        return await self._held("ack", *request)

    async def _ack_many(
        self, requests: Sequence[tuple[int, tuple[Lease, list[int]]]]
    ) -> Mapping[int, bool]:
        leases = [lease for _, (lease, _) in requests]
        seq_shards = [shard for shard, (_, seqs) in requests for _ in seqs]
        seqs = [seq for _, (_, batch) in requests for seq in batch]
        held = {
            row["shard"]
            for row in await self._main().fetch(
                self._q["ack_shards"], *_lease_arrays(leases), seq_shards, seqs
            )
        }
        return {shard: shard in held for shard, _ in requests}

    async def retry(
        self, lease: Lease, envelopes: Sequence[Envelope], error: str, delay: float
    ) -> None:
        """Count an attempt and delay the messages by ``delay`` s (fenced)."""
        await self._fenced("retry", lease, envelopes, error, max(delay, 0.0))

    async def dead_letter(self, lease: Lease, envelopes: Sequence[Envelope], error: str) -> None:
        """Move messages to ``<table>_dead`` with ``error`` (fenced)."""
        await self._fenced("dead_letter", lease, envelopes, error)

    @property
    def wakes_every_commit(self) -> bool:
        """True while LISTEN is up: writers (``notify=True``) NOTIFY the shard of every add."""
        return self._listener is not None and self._listener.connected

    async def wait(self, timeout: float) -> set[int] | None:
        """Return the shards notified by committing writers, or None after ``timeout`` s."""
        if self._listener is None:
            await anyio.sleep(timeout)
            return None
        return await self._listener.wait(timeout)

    # -- operations -------------------------------------------------------------------------
    async def status(self) -> StoreStatus:
        """Pending count, oldest pending age, dead letters, instances and leases."""
        row = await self._main().fetchrow(self._q["status"], BLOCKED_SAMPLE)
        assert row is not None
        return StoreStatus(
            pending=row["pending"],
            oldest_pending_age=row["oldest"],
            dead_letters=row["dead"],
            shard_count=self.shard_count,
            instances=list(row["instances"]),
            leases=await self.leases(),
            blocked_aggregates=row["blocked"],
            blocked_sample=list(row["blocked_sample"]),
            parked=row["parked"],
        )

    async def gauges(self) -> StoreGauges:
        """Pending (exact up to 10,000, else estimated), oldest pending age, dead letters:
        the relay's metrics read these every few seconds, cheaply at any backlog."""
        row = await self._main().fetchrow(self._q["gauges"])
        assert row is not None
        return StoreGauges(
            pending=row["pending"],
            oldest_pending_age=row["oldest"],
            dead_letters=row["dead"],
            pending_estimated=row["pending_estimated"],
            blocked_aggregates=row["blocked"],
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        rows = await self._main().fetch(self._q["dead_letters"], limit)
        return [dead_letter_from_row(row) for row in rows]

    async def replay(self, ids: Sequence[UUID] | None = None) -> int:
        """Move dead letters (all when ``ids`` is None) back to the outbox, each with the
        sequence number it had (so in its place in its aggregate's order); none if an id
        is not a dead letter (``DeadLetterNotFoundError``)."""
        return await self._dead_letter_change("replay", ids)

    async def discard(self, ids: Sequence[UUID] | None = None) -> int:
        """Delete dead letters (all when ``ids`` is None); none if an id is not a dead
        letter (``DeadLetterNotFoundError``)."""
        return await self._dead_letter_change("discard", ids, None)

    async def purge(self, older_than: float) -> int:
        """Delete the dead letters that failed more than ``older_than`` s ago."""
        return await self._dead_letter_change("discard", None, older_than)

    async def _dead_letter_change(self, query: str, ids: Sequence[UUID] | None, *args: Any) -> int:
        """Run ``replay`` or ``discard`` in one transaction on the durable pool, after
        checking (and locking) that every one of ``ids`` is a dead letter."""
        wanted = None if ids is None else list(dict.fromkeys(ids))
        async with self._leasing().acquire() as conn, conn.transaction():
            if wanted:
                found = {r["id"] for r in await conn.fetch(self._q["dead_letters_found"], wanted)}
                missing = [i for i in wanted if i not in found]
                if missing:
                    raise DeadLetterNotFoundError(missing)
            row = await conn.fetchrow(self._q[query], wanted, *args)
        assert row is not None
        changed: int = row["changed"]
        return changed
