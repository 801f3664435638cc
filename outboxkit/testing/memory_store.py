"""``MemoryStore``: a :class:`~outboxkit.protocols.Store` held in memory, for unit tests.

It keeps the contract's semantics and passes :class:`~outboxkit.testing.StoreConformance`:
claims in position order that skip an aggregate from its first message not yet due (and, with
``on_dead_letter="block"``, from its first dead letter on), replays into the original place,
fencing tokens checked on ack/retry/dead_letter, lease expiry by its own clock
(``store.clock``, which a test moves forward with ``store.clock.advance(seconds)`` instead of
sleeping). Messages are written with :meth:`MemoryStore.add`; nothing survives the process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import anyio
import anyio.lowlevel

from outboxkit.errors import DeadLetterNotFoundError, LeaseLostError
from outboxkit.message import Message
from outboxkit.protocols import (
    BLOCKED_SAMPLE,
    DeadLetter,
    DeadLetterPolicy,
    Envelope,
    Lease,
    LeaseInfo,
    StoreStatus,
)
from outboxkit.sharding import shard_of

__all__ = ["MemoryClock", "MemoryStore"]


class MemoryClock:
    """The store's database clock: monotonic time plus an offset a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0
        """Seconds added to the monotonic time (see ``advance``)."""

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (leases and retry delays expire sooner)."""
        self.offset += seconds


@dataclass
class Row:
    """A pending message and what the store keeps about it."""

    position: int
    shard: int
    message: Message
    written: float
    attempts: int = 0
    due: float = 0.0


@dataclass
class LeaseRow:
    """The lease of one shard."""

    owner: str | None = None
    token: int = 0
    expires: float = 0.0


class MemoryStore:
    """A Store held in memory (see the module docstring).

    ``rows`` are the pending messages by position, ``acked`` the ids acknowledged so far and
    ``dead`` the dead letters; set ``wakes_every_commit`` to make the relay rely on
    :meth:`wait` naming the shard of every :meth:`add`, as it does for Postgres with LISTEN.
    Every Store method first awaits :meth:`_enter` with its name: a subclass can override it to
    count calls or inject faults.
    """

    def __init__(self, shard_count: int = 8) -> None:
        if shard_count < 1:
            raise ValueError(f"shard_count must be >= 1, got {shard_count}")
        self._shard_count = shard_count
        self.clock = MemoryClock()
        """The database clock; advance it to expire leases and retry delays."""
        self.rows: dict[int, Row] = {}
        """Pending messages by position."""
        self.lease_rows = {shard: LeaseRow() for shard in range(shard_count)}
        """The lease table, by shard."""
        self.instances: dict[str, float] = {}
        """Live relay instances and when their heartbeat expires."""
        self.dead: list[DeadLetter] = []
        """The dead letters."""
        self.dead_positions: dict[UUID, int] = {}
        """The position each dead letter had (a replay puts it back there)."""
        self.acked: list[UUID] = []
        """Ids acknowledged so far, in order."""
        self.wakes_every_commit = False
        self._next_position = 1
        self._signal: anyio.Event | None = None
        self._woke: set[int] = set()

    def add(self, *messages: Message) -> None:
        """Commit ``messages``, in order (what a writer does in a business transaction)."""
        for message in messages:
            shard = shard_of(message.aggregate_id, self._shard_count)
            self._insert(shard, message)
        if self._signal is not None:
            self._signal.set()

    def _insert(self, shard: int, message: Message, position: int | None = None) -> None:
        if position is None:
            position, self._next_position = self._next_position, self._next_position + 1
        self.rows[position] = Row(position, shard, message, written=self.clock())
        self._woke.add(shard)

    async def _enter(self, name: str) -> None:
        """Called first by every Store method: a checkpoint, as a database call would be."""
        await anyio.lowlevel.checkpoint()

    def _fence(self, lease: Lease) -> None:
        row = self.lease_rows[lease.shard]
        if row.owner != lease.owner or row.token != lease.token or row.expires <= self.clock():
            raise LeaseLostError.not_held(lease)

    # -- Store protocol -------------------------------------------------------------------
    @property
    def shard_count(self) -> int:
        return self._shard_count

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def migrate(self, shard_count: int | None = None) -> None:
        return None

    async def heartbeat(self, owner: str, ttl: float) -> list[str]:
        await self._enter("heartbeat")
        now = self.clock()
        self.instances[owner] = now + ttl
        self.instances = {k: v for k, v in self.instances.items() if v > now}
        return sorted(self.instances)

    async def leave(self, owner: str) -> None:
        await self._enter("leave")
        self.instances.pop(owner, None)

    async def leases(self) -> list[LeaseInfo]:
        await self._enter("leases")
        now = self.clock()
        return [
            LeaseInfo(
                shard=s,
                owner=r.owner,
                token=r.token,
                expires_in=None if r.owner is None else r.expires - now,
            )
            for s, r in sorted(self.lease_rows.items())
        ]

    async def acquire(self, owner: str, shard: int, ttl: float) -> Lease | None:
        await self._enter("acquire")
        row, now = self.lease_rows[shard], self.clock()
        if row.owner is None or row.expires <= now:
            row.owner, row.token = owner, row.token + 1
        elif row.owner != owner:
            return None
        row.expires = now + ttl
        return Lease(shard=shard, owner=owner, token=row.token)

    async def renew(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        await self._enter("renew")
        now, kept = self.clock(), []
        for lease in leases:
            row = self.lease_rows[lease.shard]
            if row.owner == lease.owner and row.token == lease.token and row.expires > now:
                row.expires = now + ttl
                kept.append(lease)
        return kept

    async def release(self, leases: Sequence[Lease]) -> None:
        await self._enter("release")
        for lease in leases:
            row = self.lease_rows[lease.shard]
            if row.owner == lease.owner and row.token == lease.token:
                row.owner, row.expires = None, 0.0

    def _first_dead(self) -> dict[str, int]:
        """Aggregate id -> position of its first dead letter."""
        first: dict[str, int] = {}
        for letter in self.dead:
            aggregate = letter.message.aggregate_id
            position = self.dead_positions[letter.message.id]
            first[aggregate] = min(position, first.get(aggregate, position))
        return first

    def _parked(self) -> list[Row]:
        """Pending rows after a dead letter of their aggregate."""
        first = self._first_dead()
        return [
            row
            for row in self.rows.values()
            if row.position > first.get(row.message.aggregate_id, row.position)
        ]

    async def claim(
        self, lease: Lease, limit: int, *, on_dead_letter: DeadLetterPolicy = "block"
    ) -> list[Envelope]:
        await self._enter("claim")
        now, blocked, out = self.clock(), set(), []
        parked = {row.position for row in self._parked()} if on_dead_letter == "block" else set()
        for row in sorted(self.rows.values(), key=lambda r: r.position):
            if row.shard != lease.shard or row.message.aggregate_id in blocked:
                continue
            if row.due > now or row.position in parked:
                blocked.add(row.message.aggregate_id)
                continue
            out.append(
                Envelope(
                    message=row.message,
                    shard=row.shard,
                    position=row.position,
                    attempts=row.attempts,
                )
            )
            if len(out) >= limit:
                break
        return out

    async def ack(self, lease: Lease, envelopes: Sequence[Envelope]) -> None:
        await self._enter("ack")
        self._fence(lease)
        for envelope in envelopes:
            if self.rows.pop(envelope.position, None) is not None:
                self.acked.append(envelope.message.id)

    async def retry(
        self, lease: Lease, envelopes: Sequence[Envelope], error: str, delay: float
    ) -> None:
        await self._enter("retry")
        self._fence(lease)
        for envelope in envelopes:
            row = self.rows.get(envelope.position)
            if row is not None:
                row.attempts += 1
                row.due = self.clock() + delay

    async def dead_letter(self, lease: Lease, envelopes: Sequence[Envelope], error: str) -> None:
        await self._enter("dead_letter")
        self._fence(lease)
        for envelope in envelopes:
            row = self.rows.pop(envelope.position, None)
            if row is None:
                continue
            self.dead.append(
                DeadLetter(
                    message=row.message,
                    shard=row.shard,
                    error=error,
                    attempts=row.attempts + 1,
                    failed_at=self._now(),
                )
            )
            self.dead_positions[row.message.id] = row.position

    async def wait(self, timeout: float) -> set[int] | None:
        """The shards that got messages since the last call, or None after ``timeout``."""
        await self._enter("wait")
        if self._woke:
            woke, self._woke = self._woke, set()
            return woke
        if self._signal is None or self._signal.is_set():
            self._signal = anyio.Event()
        with anyio.move_on_after(timeout):
            await self._signal.wait()
        woke, self._woke = self._woke, set()
        return woke or None

    # -- operations -----------------------------------------------------------------------
    async def status(self) -> StoreStatus:
        await self._enter("status")
        now = self.clock()
        oldest = min((row.written for row in self.rows.values()), default=None)
        blocked = sorted(self._first_dead())
        return StoreStatus(
            pending=len(self.rows),
            oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
            dead_letters=len(self.dead),
            shard_count=self._shard_count,
            instances=sorted(k for k, v in self.instances.items() if v > now),
            leases=await self.leases(),
            blocked_aggregates=len(blocked),
            blocked_sample=blocked[:BLOCKED_SAMPLE],
            parked=len(self._parked()),
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        await self._enter("dead_letters")
        return self.dead[:limit]

    def _now(self) -> datetime:
        """The store's clock as a datetime (moved by ``clock.advance`` too)."""
        return datetime.now(UTC) + timedelta(seconds=self.clock.offset)

    def _take(self, ids: Sequence[UUID] | None) -> list[DeadLetter]:
        """Remove and return the dead letters ``ids`` (all if None), oldest first; none if
        one of ``ids`` is not a dead letter."""
        if ids is not None:
            known = {d.message.id for d in self.dead}
            missing = [i for i in dict.fromkeys(ids) if i not in known]
            if missing:
                raise DeadLetterNotFoundError(missing)
        chosen = None if ids is None else set(ids)
        taken = [d for d in self.dead if chosen is None or d.message.id in chosen]
        self.dead = [d for d in self.dead if chosen is not None and d.message.id not in chosen]
        return taken

    async def replay(self, ids: Sequence[UUID] | None = None) -> int:
        """Move dead letters (all if ``ids`` is None) back to the positions they had."""
        await self._enter("replay")
        moved = self._take(ids)
        for letter in moved:
            position = self.dead_positions.pop(letter.message.id)
            self._insert(letter.shard, letter.message, position)
        if moved and self._signal is not None:
            self._signal.set()
        return len(moved)

    async def discard(self, ids: Sequence[UUID] | None = None) -> int:
        """Delete dead letters (all if ``ids`` is None)."""
        await self._enter("discard")
        taken = self._take(ids)
        for letter in taken:
            del self.dead_positions[letter.message.id]
        if taken and self._signal is not None:
            self._signal.set()
        return len(taken)

    async def purge(self, older_than: float) -> int:
        """Delete the dead letters that failed more than ``older_than`` s ago."""
        await self._enter("purge")
        cutoff = self._now() - timedelta(seconds=older_than)
        return await self.discard([d.message.id for d in self.dead if d.failed_at < cutoff])
