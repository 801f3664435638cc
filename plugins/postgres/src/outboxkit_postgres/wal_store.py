"""The ``pg`` store in log-tailing modes: the slot's admin, lease and fenced writes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import asyncpg
import msgspec

from outboxkit.errors import ConfigurationError
from outboxkit.message import Message
from outboxkit.metrics import RelayMetrics
from outboxkit.protocols import Publisher, SlotStatus, StoreStatus
from outboxkit.relay.settings import RelaySettings
from outboxkit.sharding import shard_of
from outboxkit.sql_names import check_identifier
from outboxkit_postgres.codec import writer_arguments
from outboxkit_postgres.log_wake import LogWake
from outboxkit_postgres.names import OutboxNames
from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.slot import (
    SlotStream,
    check_slot,
    confirmed_past,
    drop_slot,
    ensure_slot,
    libpq_tls,
    slot_lag,
    terminate_readers,
)
from outboxkit_postgres.store import PostgresStore
from outboxkit_postgres.wal_relay import SlotHolder, WalTail

__all__ = ["PostgresWalStore"]

_headers = msgspec.json.Encoder()

DRAIN_POLL = 0.1
"""Seconds between two looks at the slot's confirmed position in :meth:`log_drained`."""


class PostgresWalStore(PostgresStore):
    """The WAL-only outbox (``mode = "wal"``): writers emit logical decoding messages; the
    relay's :class:`~outboxkit_postgres.wal_relay.WalTail` reads them from the slot. The
    table part (claims, leases, dead letters) serves dead letters and the messages parked
    behind them, so ``status`` and ``dead-letters list|replay|discard`` work as for the table
    store (a replayed dead letter goes back to the table, in its place before the parked
    ones, and the table relay publishes it).
    """

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        super().__init__(settings)
        self.slot_name = self._settings.slot or self._names.slot
        """The replication slot (and publication) this store reads."""
        check_identifier(self.slot_name, "slot name")

    @property
    def names(self) -> OutboxNames:
        """The outbox's SQL names."""
        return self._names

    async def migrate(self, shard_count: int | None = None) -> None:
        """Create the tables, then the publication and the slot if missing."""
        await super().migrate(shard_count)
        conn = await self._connect()
        try:
            await ensure_slot(conn, self.slot_name, self._published_table())
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ConfigurationError(
                f"cannot create replication slot {self.slot_name!r}: {exc}; run migrate as a "
                "role with REPLICATION and CREATE on the database (docs/log-tailing.md)"
            ) from None
        finally:
            await conn.close()

    def _published_table(self) -> str | None:
        """The table whose inserts the publication carries (None: messages only)."""
        return None

    async def drop_slot(self) -> bool:
        """Drop the slot and publication (a forgotten slot keeps WAL forever)."""
        conn = await self._connect()
        try:
            return await drop_slot(conn, self.slot_name)
        finally:
            await conn.close()

    async def open(self) -> None:
        """Open the table store, then check wal_level, REPLICATION and the slot."""
        conn = await self._connect()
        try:
            await check_slot(conn, self.slot_name)
        finally:
            await conn.close()
        await super().open()

    def tail(
        self, publisher: Publisher, settings: RelaySettings, metrics: RelayMetrics, owner: str
    ) -> SlotHolder:
        """The slot reader the sharded relay runs beside its shard workers."""
        return WalTail(self, publisher, settings, metrics, owner, random.Random())

    async def wake(self, payloads: Sequence[str]) -> None:
        """NOTIFY the relays' channel with each payload (shard lists)."""
        await self._leasing().execute(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", self._names.channel, payloads
        )

    async def log_drained(self, timeout: float) -> bool:
        """Whether every message committed before the call is done (published,
        dead-lettered or parked in the table): the slot's confirmed position reaches the
        server's WAL position taken now (``pg_current_wal_lsn()``) within ``timeout`` seconds.
        The holder's heartbeat confirms past WAL without outbox messages, whoever holds the
        slot. ``exit_when_idle`` asks this once the table is idle."""
        pool = self._leasing()
        target: int = await pool.fetchval("SELECT pg_current_wal_lsn()")
        with anyio.move_on_after(timeout):
            while True:
                async with pool.acquire() as conn:
                    if await confirmed_past(conn, self.slot_name, target):
                        return True
                await anyio.sleep(DRAIN_POLL)
        return False

    # -- the slot's lease -------------------------------------------------------------------
    async def slot_acquire(self, owner: str, ttl: float) -> int | None:
        """Take the slot's lease if free or expired (new token) or extend ours."""
        token: int | None = await self._leasing().fetchval(
            self._q["slot_acquire"], self.slot_name, owner, ttl
        )
        return token

    async def slot_renew(
        self, owner: str, token: int, ttl: float, pending_since: datetime | None
    ) -> bool:
        """Extend the lease if still held; record the oldest unconfirmed commit time."""
        row = await self._leasing().fetchval(
            self._q["slot_renew"], self.slot_name, owner, token, ttl, pending_since
        )
        return row is not None

    async def slot_release(self, owner: str, token: int) -> None:
        """Free the lease if still ours."""
        await self._leasing().execute(self._q["slot_release"], self.slot_name, owner, token)

    async def slot_fence(self, owner: str, token: int) -> None:
        """Raise ``OSError`` unless the lease is held (checked before streaming starts)."""
        async with self._leasing().acquire() as conn, conn.transaction():
            if await conn.fetchval(self._q["slot_fence"], self.slot_name, owner, token) is None:
                raise OSError("slot lease lost before streaming started")

    async def slot_terminate_readers(self) -> None:
        """End any connection still streaming the slot (a former holder: fencing)."""
        async with self._leasing().acquire() as conn:
            await terminate_readers(conn, self.slot_name)

    def slot_stream(self) -> SlotStream:
        """A new (unopened) stream of the slot."""
        return SlotStream(
            self._settings.dsn,
            self.slot_name,
            self.slot_name,
            self._settings.connect_timeout,
            libpq_tls(self._settings),
        )

    # -- fenced writes of the slot reader ---------------------------------------------------
    async def wal_dead_letter(
        self,
        owner: str,
        token: int,
        messages: Sequence[Message],
        attempts: Sequence[int],
        error: str,
    ) -> bool:
        """Insert ``messages`` into the dead-letter table; False if the lease is not held."""
        columns: list[list[Any]] = [[] for _ in range(12)]
        for m, tries in zip(messages, attempts, strict=True):
            row = (
                m.id,
                shard_of(m.aggregate_id, self.shard_count),
                m.aggregate_type,
                m.aggregate_id,
                m.event_type,
                m.topic,
                m.key,
                _headers.encode(m.headers).decode(),
                m.payload,
                m.content_type,
                m.created_at,
                tries,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        held = await self._leasing().fetchval(
            self._q["wal_dead_letter"], self.slot_name, owner, token, *columns, error
        )
        return bool(held)

    async def wal_park(self, owner: str, token: int, messages: Sequence[Message]) -> bool:
        """Insert ``messages`` into the outbox table (behind their aggregate's dead letter),
        in order, in one transaction fenced by the lease; False if the lease is not held."""
        async with self._leasing().acquire() as conn, conn.transaction():
            if await conn.fetchval(self._q["slot_fence"], self.slot_name, owner, token) is None:
                return False
            sql = self._q["add_one"] if len(messages) == 1 else self._q["add"]
            await conn.execute(sql, *writer_arguments(messages, True))
        return True

    async def wal_table_aggregates(self, with_dead_letters: bool) -> list[str]:
        """Aggregates with messages waiting in the table (and dead letters, if asked)."""
        rows = await self._main().fetch(self._q["wal_table_aggregates"], with_dead_letters)
        return [row["aggregate_id"] for row in rows]

    # -- operations -------------------------------------------------------------------------
    async def status(self) -> StoreStatus:
        """The table's status plus the slot's lag, holder and a warning past the threshold."""
        status = await super().status()
        async with self._leasing().acquire() as conn:
            lag = await slot_lag(conn, self.slot_name)
            lease = await conn.fetchrow(self._q["slot_status"], self.slot_name)
        if lag is None:
            slot = SlotStatus(
                name=self.slot_name,
                lag_bytes=None,
                lag_seconds=None,
                active=False,
                holder=None,
                warning="the replication slot does not exist: run migrate",
            )
        else:
            lag_bytes, active, wal_status = lag
            holder = None
            lag_seconds = None
            if lease is not None and (lease["expires_in"] or 0) > 0:
                holder = lease["owner"]
                lag_seconds = max(0.0, lease["pending_age"] or 0.0)
            warning = None
            if lag_bytes > self._settings.slot_lag_warning_bytes:
                warning = (
                    f"the slot holds back {lag_bytes} bytes of WAL (over "
                    f"{self._settings.slot_lag_warning_bytes}): is a relay running?"
                )
            if wal_status == "lost":
                warning = "the slot lost WAL it needed (max_slot_wal_keep_size): recreate it"
            slot = SlotStatus(
                name=self.slot_name,
                lag_bytes=lag_bytes,
                lag_seconds=lag_seconds,
                active=active,
                holder=holder,
                warning=warning,
            )
        return msgspec.structs.replace(status, slot=slot)


class PostgresLogWokenStore(PostgresWalStore):
    """The table store woken by the log (``wake_from_log``): writers add rows without NOTIFY
    (``PostgresOutbox(notify=False)``); the instance holding the slot of the table's inserts
    sends the relays one coalesced NOTIFY per read turn (:mod:`~outboxkit_postgres.log_wake`).
    Everything else is the table store's."""

    def _published_table(self) -> str | None:
        return self._names.render("{{schema}}.{{table}}")

    @property
    def wakes_early(self) -> bool:
        """True: the slot can show a commit a moment before the committing transaction is
        visible to the relay's claim (:class:`outboxkit.protocols.WakesEarly`)."""
        return True

    async def log_drained(self, timeout: float) -> bool:
        """Always True: the table decides idleness (the slot only wakes the relays)."""
        return True

    def tail(
        self, publisher: Publisher, settings: RelaySettings, metrics: RelayMetrics, owner: str
    ) -> SlotHolder:
        """The slot holder the sharded relay runs beside its shard workers."""
        return LogWake(self, settings, metrics, owner)


def create_store(settings: PostgresSettings) -> PostgresStore:
    """The store of the configured mode."""
    if settings.mode == "wal":
        if settings.wake_from_log:
            raise ConfigurationError(
                "pg wake_from_log applies to mode=table (the WAL-only mode reads the log "
                "anyway): drop one of the two settings"
            )
        return PostgresWalStore(settings)
    if settings.wake_from_log:
        if not settings.notify:
            raise ConfigurationError(
                "pg wake_from_log sends the relays a NOTIFY they LISTEN to: it needs notify=true "
                "on the relay (writers use PostgresOutbox(notify=False))"
            )
        return PostgresLogWokenStore(settings)
    return PostgresStore(settings)
