"""The embedded SQLite store (``--store sqlite``): the outbox in a local file, no server.

Services write with :class:`~outboxkit.embedded.sqlite.writer.SqliteOutbox` inside their own
``sqlite3`` transaction; the relay side below runs the blocking ``sqlite3`` calls in worker
threads over one connection, one call at a time. SQLite has no notifications, so
:meth:`SqliteStore.wait` polls ``PRAGMA data_version``, which changes when another connection
commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar
from uuid import UUID

import anyio
import anyio.to_thread

from outboxkit.embedded.sqlite import leasing, messages
from outboxkit.embedded.sqlite.db import Tables, connect, migrate_schema, read_shard_count
from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.errors import ConfigurationError, SchemaMissingError, StoreUnavailableError
from outboxkit.plugins import StorePlugin
from outboxkit.protocols import (
    DeadLetter,
    DeadLetterPolicy,
    Envelope,
    Lease,
    LeaseInfo,
    StoreStatus,
)

__all__ = ["SqliteStore", "plugin"]

T = TypeVar("T")

WAIT_POLL_INTERVAL = 0.05


class SqliteStore:
    """The relay side of the SQLite outbox (see the module docs)."""

    def __init__(self, settings: SqliteSettings | None = None) -> None:
        self._settings = settings or SqliteSettings()
        self._tables = Tables(self._settings.table)
        self._conn: sqlite3.Connection | None = None
        self._lock = anyio.Lock()
        self._shard_count: int | None = None

    @property
    def shard_count(self) -> int:
        """The shard count fixed at migration (valid after :meth:`open` or :meth:`migrate`)."""
        if self._shard_count is None:
            raise RuntimeError("SqliteStore.shard_count is known only after open()")
        return self._shard_count

    @property
    def wakes_every_commit(self) -> bool:
        """False: :meth:`wait` polls ``PRAGMA data_version`` and names no shard."""
        return False

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = await anyio.to_thread.run_sync(self._connect)
            return await anyio.to_thread.run_sync(fn, conn)

    def _connect(self) -> sqlite3.Connection:
        try:
            return connect(self._settings.path)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(
                f"cannot open the SQLite outbox {self._settings.path!r}: {exc}", retriable=False
            ) from exc

    async def open(self) -> None:
        """Open the database file and check the schema (``SchemaMissingError`` if absent).

        Only :meth:`migrate` creates the file: the relay and the read commands never do.
        """
        path = self._settings.path
        if path != ":memory:" and not await anyio.Path(path).exists():
            raise SchemaMissingError(
                f"the SQLite outbox database {path!r} does not exist: run "
                "`outboxkit migrate --store sqlite` (with the same --sqlite-path)"
            )
        self._shard_count = await self._run(lambda c: read_shard_count(c, self._tables))

    async def close(self) -> None:
        """Close the connection. Idempotent."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)

    async def migrate(self, shard_count: int | None = None) -> None:
        """Create or upgrade the schema; ``shard_count`` applies on creation only."""
        count = self._settings.shard_count if shard_count is None else shard_count
        if count < 1:
            raise ConfigurationError(f"shard_count must be >= 1, got {count}")
        self._shard_count = await self._run(lambda c: migrate_schema(c, self._tables, count))

    async def heartbeat(self, owner: str, ttl: float) -> list[str]:
        """Mark ``owner`` alive for ``ttl`` seconds; return the live instances, sorted."""
        return await self._run(lambda c: leasing.heartbeat(c, self._tables, owner, ttl))

    async def leave(self, owner: str) -> None:
        """Unregister ``owner``."""
        await self._run(lambda c: leasing.leave(c, self._tables, owner))

    async def leases(self) -> list[LeaseInfo]:
        """All shards' leases, ordered by shard."""
        return await self._run(lambda c: leasing.lease_infos(c, self._tables))

    async def acquire(self, owner: str, shard: int, ttl: float) -> Lease | None:
        """Take or extend the lease on ``shard``; None if another live owner holds it."""
        return await self._run(lambda c: leasing.acquire(c, self._tables, owner, shard, ttl))

    async def renew(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """Extend the given leases; return those still held."""
        return await self._run(lambda c: leasing.renew(c, self._tables, leases, ttl))

    async def release(self, leases: Sequence[Lease]) -> None:
        """Give up the given leases (only those still held with the same token)."""
        await self._run(lambda c: leasing.release(c, self._tables, leases))

    async def claim(
        self, lease: Lease, limit: int, *, on_dead_letter: DeadLetterPolicy = "block"
    ) -> list[Envelope]:
        """Pending, due messages of ``lease.shard`` in position order (with ``block``, none
        after a dead letter of its aggregate)."""
        block = on_dead_letter == "block"
        return await self._run(lambda c: messages.claim(c, self._tables, lease.shard, limit, block))

    async def ack(self, lease: Lease, envelopes: Sequence[Envelope]) -> None:
        """Remove published messages. Fenced."""
        await self._run(lambda c: messages.ack(c, self._tables, lease, envelopes))

    async def retry(
        self, lease: Lease, envelopes: Sequence[Envelope], error: str, delay: float
    ) -> None:
        """Count a failed attempt; the messages are due again in ``delay`` s. Fenced."""
        await self._run(lambda c: messages.retry(c, self._tables, lease, envelopes, error, delay))

    async def dead_letter(self, lease: Lease, envelopes: Sequence[Envelope], error: str) -> None:
        """Move messages to the dead letters with ``error``. Fenced."""
        await self._run(lambda c: messages.dead_letter(c, self._tables, lease, envelopes, error))

    async def wait(self, timeout: float) -> None:
        """Return once another connection committed (new messages may be pending) or after
        ``timeout`` seconds; polls ``PRAGMA data_version`` every 50 ms."""
        with anyio.move_on_after(timeout):
            before = await self._run(_data_version)
            while True:
                await anyio.sleep(WAIT_POLL_INTERVAL)
                if await self._run(_data_version) != before:
                    return

    async def status(self) -> StoreStatus:
        """Pending count, oldest pending age, dead letters, instances and leases."""

        def read(c: sqlite3.Connection) -> StoreStatus:
            pending, age, dead = messages.count_pending(c, self._tables)
            blocked, sample, parked = messages.blocked(c, self._tables)
            return StoreStatus(
                pending=pending,
                oldest_pending_age=age,
                dead_letters=dead,
                shard_count=self.shard_count,
                instances=leasing.live_instances(c, self._tables),
                leases=leasing.lease_infos(c, self._tables),
                blocked_aggregates=blocked,
                blocked_sample=sample,
                parked=parked,
            )

        return await self._run(read)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        return await self._run(lambda c: messages.dead_letters(c, self._tables, limit))

    async def replay(self, ids: Sequence[UUID] | None = None) -> int:
        """Move dead letters (all if ``ids`` is None) back to their place in the outbox;
        return how many (none if an id is not a dead letter: ``DeadLetterNotFoundError``)."""
        return await self._run(lambda c: messages.replay(c, self._tables, ids))

    async def discard(self, ids: Sequence[UUID] | None = None) -> int:
        """Delete dead letters (all if ``ids`` is None); return how many (none if an id is
        not a dead letter: ``DeadLetterNotFoundError``)."""
        return await self._run(lambda c: messages.discard(c, self._tables, ids))

    async def purge(self, older_than: float) -> int:
        """Delete the dead letters that failed more than ``older_than`` s ago."""
        return await self._run(lambda c: messages.purge(c, self._tables, older_than))


def _data_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)


plugin = StorePlugin(
    name="sqlite",
    settings_type=SqliteSettings,
    create=SqliteStore,
    summary="embedded SQLite outbox in a local file (no server; polling wake-ups)",
)
