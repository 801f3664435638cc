"""In-memory fakes of Store and Publisher for unit tests of the relay's core logic.

The fake store keeps the contract's semantics: claim in position order skipping an aggregate
from its first not-due message (and, with ``on_dead_letter="block"``, from its first dead
letter on), fencing tokens checked on ack/retry/dead_letter, replays in the original place,
lease expiry by its own clock (``FakeStore.clock``, movable with ``advance``).
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import anyio
import anyio.lowlevel
import msgspec

from outboxkit.errors import DeadLetterNotFoundError, LeaseLostError, StoreUnavailableError
from outboxkit.message import Message
from outboxkit.protocols import (
    BLOCKED_SAMPLE,
    DeadLetter,
    DeadLetterPolicy,
    Delivered,
    Envelope,
    Failed,
    Lease,
    LeaseInfo,
    Outcome,
    StoreStatus,
)
from outboxkit.relay import ShardedRelay
from outboxkit.relay_settings import RelaySettings
from outboxkit.sharding import shard_of


class Clock:
    """The fake database clock: monotonic time plus an adjustable offset."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Row:
    position: int
    shard: int
    message: Message
    attempts: int = 0
    due: float = 0.0


@dataclass
class LeaseRow:
    owner: str | None = None
    token: int = 0
    expires: float = 0.0


class FakeStore:
    """A Store held in memory. ``faults[name] = n`` makes the next n calls of ``name`` fail."""

    def __init__(self, shard_count: int = 8) -> None:
        self._shard_count = shard_count
        self.clock = Clock()
        self.rows: dict[int, Row] = {}
        self.lease_rows = {shard: LeaseRow() for shard in range(shard_count)}
        self.instances: dict[str, float] = {}
        self.dead: list[DeadLetter] = []
        self.dead_positions: dict[UUID, int] = {}
        """The position each dead letter had in the outbox (a replay puts it back there)."""
        self.acked: list[UUID] = []
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.hangs: Counter[str] = Counter()
        """``hangs[name] = n``: the next n calls of ``name`` never return (a stuck server)."""
        self.refused = 0
        self.wakes_every_commit = False
        """What the relay reads from stores that wake a shard after each of its commits."""
        self.opened = self.closed = False
        self._next_position = 1
        self._signal: anyio.Event | None = None
        self._woke: set[int] = set()

    # -- test helpers ---------------------------------------------------------------------
    def add(self, *messages: Message) -> None:
        for message in messages:
            shard = shard_of(message.aggregate_id, self._shard_count)
            self.rows[self._next_position] = Row(self._next_position, shard, message)
            self._next_position += 1
            self._woke.add(shard)
        if self._signal is not None:
            self._signal.set()

    def steal(self, shard: int, owner: str = "thief", ttl: float = 1000.0) -> None:
        row = self.lease_rows[shard]
        row.owner, row.token, row.expires = owner, row.token + 1, self.clock() + ttl

    def owners(self) -> dict[int, str | None]:
        now = self.clock()
        return {s: (r.owner if r.expires > now else None) for s, r in self.lease_rows.items()}

    async def _enter(self, name: str) -> None:
        self.calls[name] += 1
        await anyio.lowlevel.checkpoint()
        if self.hangs[name] > 0:
            self.hangs[name] -= 1
            await anyio.sleep_forever()
        if self.faults[name] > 0:
            self.faults[name] -= 1
            raise StoreUnavailableError(f"injected fault in {name}")

    def _fence(self, lease: Lease) -> None:
        row = self.lease_rows[lease.shard]
        if row.owner != lease.owner or row.token != lease.token or row.expires <= self.clock():
            self.refused += 1
            raise LeaseLostError(f"shard {lease.shard} is not held with token {lease.token}")

    # -- Store protocol -------------------------------------------------------------------
    @property
    def shard_count(self) -> int:
        return self._shard_count

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

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
            aggregate, position = (
                letter.message.aggregate_id,
                self.dead_positions[letter.message.id],
            )
            first[aggregate] = min(position, first.get(aggregate, position))
        return first

    def _parked(self) -> list[Row]:
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
        parked = {id(row) for row in self._parked()} if on_dead_letter == "block" else set()
        for row in sorted(self.rows.values(), key=lambda r: r.position):
            if row.shard != lease.shard or row.message.aggregate_id in blocked:
                continue
            if id(row) in parked:
                blocked.add(row.message.aggregate_id)
                continue
            if row.due > now:
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
            row = self.rows[envelope.position]
            row.attempts += 1
            row.due = self.clock() + delay

    async def dead_letter(self, lease: Lease, envelopes: Sequence[Envelope], error: str) -> None:
        await self._enter("dead_letter")
        self._fence(lease)
        for envelope in envelopes:
            row = self.rows.pop(envelope.position)
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

    async def status(self) -> StoreStatus:
        await self._enter("status")
        now = self.clock()
        blocked = sorted(self._first_dead())
        oldest = min((r.message.created_at for r in self.rows.values()), default=None)
        return StoreStatus(
            pending=len(self.rows),
            oldest_pending_age=None
            if oldest is None
            else max(0.0, (self._now() - oldest).total_seconds()),
            dead_letters=len(self.dead),
            shard_count=self._shard_count,
            instances=sorted(k for k, v in self.instances.items() if v > now),
            leases=await self.leases(),
            blocked_aggregates=len(blocked),
            blocked_sample=blocked[:BLOCKED_SAMPLE],
            parked=len(self._parked()),
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.dead[:limit]

    def _now(self) -> datetime:
        """The fake database clock as a datetime (moved by ``clock.advance`` too)."""
        return datetime.now(UTC) + timedelta(seconds=self.clock.offset)

    def _take(self, ids: Sequence[UUID] | None) -> list[DeadLetter]:
        """Remove and return the dead letters ``ids`` (all if None); none if one is unknown."""
        if ids is not None:
            known = {d.message.id for d in self.dead}
            missing = [i for i in dict.fromkeys(ids) if i not in known]
            if missing:
                raise DeadLetterNotFoundError(missing)
        wanted = None if ids is None else set(ids)
        taken = [d for d in self.dead if wanted is None or d.message.id in wanted]
        self.dead = [d for d in self.dead if d not in taken]
        return taken

    async def replay(self, ids: Sequence[UUID] | None = None) -> int:
        await self._enter("replay")
        taken = self._take(ids)
        for letter in taken:
            position = self.dead_positions.pop(letter.message.id)
            self.rows[position] = Row(position, letter.shard, letter.message)
            self._woke.add(letter.shard)
        if taken and self._signal is not None:
            self._signal.set()
        return len(taken)

    async def discard(self, ids: Sequence[UUID] | None = None) -> int:
        await self._enter("discard")
        taken = self._take(ids)
        for letter in taken:
            del self.dead_positions[letter.message.id]
        return len(taken)

    async def purge(self, older_than: float) -> int:
        await self._enter("purge")
        cutoff = self._now() - timedelta(seconds=older_than)
        return await self.discard([d.message.id for d in self.dead if d.failed_at < cutoff])


FailRule = Callable[[Message, int], Outcome | None]
"""Given a message and its attempt number (1-based), an outcome to force, or None."""


@dataclass
class FakePublisher:
    """A broker in memory. Aggregates of one call publish concurrently, each in order; after
    a failure the rest of that aggregate is not sent (reported retriable), per the contract."""

    fail: FailRule | None = None
    delay: Callable[[Message], float] | None = None
    gate: anyio.Event | None = None
    """If set, every publish waits for it first (a hanging broker)."""
    error: Exception | None = None
    """If set, publish raises it."""
    delivered: list[Message] = field(default_factory=list)
    attempts: Counter[UUID] = field(default_factory=Counter)
    calls: int = 0
    in_flight: int = 0
    opened: bool = False
    closed: bool = False

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        self.calls += 1
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.error is not None:
                raise self.error
            outcomes: list[Outcome | None] = [None] * len(messages)
            groups: dict[str, list[int]] = defaultdict(list)
            for index, message in enumerate(messages):
                groups[message.aggregate_id].append(index)
            async with anyio.create_task_group() as tg:
                for indices in groups.values():
                    tg.start_soon(self._publish_aggregate, messages, indices, outcomes)
            return [o if o is not None else Failed("lost", retriable=True) for o in outcomes]
        finally:
            self.in_flight -= 1

    async def _publish_aggregate(
        self, messages: Sequence[Message], indices: list[int], outcomes: list[Outcome | None]
    ) -> None:
        failed = False
        for index in indices:
            message = messages[index]
            if failed:
                outcomes[index] = Failed("not sent: an earlier message failed", retriable=True)
                continue
            if self.delay is not None:
                await anyio.sleep(self.delay(message))
            self.attempts[message.id] += 1
            forced = self.fail(message, self.attempts[message.id]) if self.fail else None
            if isinstance(forced, Failed):
                outcomes[index], failed = forced, True
                continue
            duplicate = any(m.id == message.id for m in self.delivered)
            self.delivered.append(message)
            outcomes[index] = Delivered(duplicate=duplicate)


# -- helpers --------------------------------------------------------------------------------


def messages(aggregates: int, per_aggregate: int, prefix: str = "agg") -> list[Message]:
    """``per_aggregate`` events for each of ``aggregates`` aggregates, interleaved."""
    return [
        Message.create(
            aggregate_type="order",
            aggregate_id=f"{prefix}-{a}",
            event_type="e",
            payload={"seq": n},
        )
        for n in range(per_aggregate)
        for a in range(aggregates)
    ]


def settings(**overrides: object) -> RelaySettings:
    """Fast settings for tests (short lease, poll and backoff)."""
    base: dict[str, object] = {
        "lease_ttl": 0.6,
        "poll_interval": 0.02,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "drain_timeout": 2.0,
        "batch_size": 50,
    }
    base.update(overrides)
    return RelaySettings(**base)  # type: ignore[arg-type]


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def running(
    relays: Sequence[ShardedRelay],
    body: Callable[[], Awaitable[None]],
    timeout: float = 20.0,
) -> None:
    """Run ``relays`` while ``body`` runs, then stop them and wait until they return."""
    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            for relay in relays:
                tg.start_soon(relay.run)
            try:
                await body()
            finally:
                for relay in relays:
                    relay.stop()


def random_delay(rng: random.Random, high: float = 0.005) -> Callable[[Message], float]:
    return lambda _message: rng.uniform(0.0, high)


def per_aggregate_order(delivered: Sequence[Message]) -> dict[str, list[int]]:
    """For each aggregate, the ``seq`` payloads in delivery order (first deliveries only)."""
    seen: set[UUID] = set()
    order: defaultdict[str, list[int]] = defaultdict(list)
    for message in delivered:
        if message.id in seen:
            continue
        seen.add(message.id)
        order[message.aggregate_id].append(msgspec.json.decode(message.payload)["seq"])
    return order


def gated(
    shard_count: int, aggregates: int, **overrides: object
) -> tuple[FakeStore, FakePublisher, anyio.Event, ShardedRelay]:
    """A relay whose publisher hangs until the returned event is set, with one message for
    each of ``aggregates`` aggregates pending."""
    store, gate = FakeStore(shard_count=shard_count), anyio.Event()
    publisher = FakePublisher(gate=gate)
    store.add(*messages(aggregates=aggregates, per_aggregate=1))
    return store, publisher, gate, ShardedRelay(store, publisher, settings(**overrides))
