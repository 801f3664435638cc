"""In-memory fakes of Store and Publisher for unit tests of the relay's core logic.

The fake store is :class:`outboxkit.testing.MemoryStore` with call counters and injected
faults; the fake publisher is a broker in memory.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import anyio
import msgspec

from outboxkit.errors import LeaseLostError, StoreUnavailableError
from outboxkit.message import Message
from outboxkit.protocols import Delivered, Failed, Lease, Outcome
from outboxkit.relay import ShardedRelay
from outboxkit.relay.settings import RelaySettings
from outboxkit.testing import MemoryStore


class FakeStore(MemoryStore):
    """:class:`MemoryStore` that counts calls and fails on demand: ``faults[name] = n`` makes
    the next n calls of ``name`` fail, ``hangs[name] = n`` makes them never return."""

    def __init__(self, shard_count: int = 8) -> None:
        super().__init__(shard_count)
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.hangs: Counter[str] = Counter()
        self.refused = 0
        self.opened = self.closed = False

    def steal(self, shard: int, owner: str = "thief", ttl: float = 1000.0) -> None:
        row = self.lease_rows[shard]
        row.owner, row.token, row.expires = owner, row.token + 1, self.clock() + ttl

    def owners(self) -> dict[int, str | None]:
        now = self.clock()
        return {s: (r.owner if r.expires > now else None) for s, r in self.lease_rows.items()}

    async def _enter(self, name: str) -> None:
        self.calls[name] += 1
        await super()._enter(name)
        if self.hangs[name] > 0:
            self.hangs[name] -= 1
            await anyio.sleep_forever()
        if self.faults[name] > 0:
            self.faults[name] -= 1
            raise StoreUnavailableError(f"injected fault in {name}")

    def _fence(self, lease: Lease) -> None:
        try:
            super()._fence(lease)
        except LeaseLostError:
            self.refused += 1
            raise

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True


class ReportingPublisher:
    """Base of scripted publishers that report deliveries: ``publish`` reports to nobody."""

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        return await self.publish_reporting(messages, lambda _indices: None)

    async def publish_reporting(
        self, messages: Sequence[Message], delivered: Callable[[Sequence[int]], None]
    ) -> list[Outcome]:
        raise NotImplementedError


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
