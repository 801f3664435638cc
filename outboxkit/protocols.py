"""The seams of outboxkit: Store, Publisher and Relay protocols and the types they exchange.

A store plugin implements :class:`Store` (its *writer* API, which runs inside the caller's
transaction, is plugin-specific); a publisher plugin implements :class:`Publisher`. The
conformance suites in :mod:`outboxkit.testing` check both contracts against a real backend.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable
from uuid import UUID

import msgspec

from outboxkit.message import Message

__all__ = [
    "DeadLetter",
    "DeadLetterPolicy",
    "Delivered",
    "Envelope",
    "Failed",
    "Lease",
    "LeaseInfo",
    "Outcome",
    "Publisher",
    "Relay",
    "ReportsDeliveries",
    "SlotStatus",
    "Store",
    "StoreGauges",
    "StoreStatus",
    "WakesEarly",
    "not_sent",
]


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A claimed message with the store's bookkeeping.

    ``position`` orders messages within a shard (Postgres: the sequence); ``attempts`` counts
    failed publish attempts so far; ``ref`` is a store-private locator (e.g. a document id).
    ``sequence``, if the store keeps one, is the message's number within its aggregate: it
    grows in the aggregate's commit order and is the same at every claim of the message; the
    relay sends it in the ``outboxkit-sequence`` header so consumers can tell an old event from
    a new one (Postgres and SQLite: the position; MongoDB: the entry's append count).
    Not tracked by the cyclic garbage collector, like :class:`~outboxkit.message.Message`.
    """

    message: Message
    """The message as written."""
    shard: int
    """The shard it belongs to (``shard_of(aggregate_id)``)."""
    position: int
    """Its place in the shard's order (Postgres: the sequence)."""
    attempts: int = 0
    """Failed publish attempts so far."""
    ref: str | int | None = None
    """A store-private locator (e.g. a document id)."""
    sequence: int | None = None
    """Its number within its aggregate, if the store keeps one (see above)."""


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A held shard lease. ``token`` is the fencing token: it grows with every new owner."""

    shard: int
    """The leased shard."""
    owner: str
    """The relay instance holding it."""
    token: int
    """The fencing token: it grows with every new owner."""


class LeaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the lease table as seen now. ``expires_in`` is in seconds by the database clock
    (negative once expired); ``owner`` is None for a shard never leased or released."""

    shard: int
    """The shard."""
    owner: str | None
    """The holder; None for a shard never leased or released."""
    token: int
    """The fencing token of the last owner."""
    expires_in: float | None
    """Seconds left by the database clock (negative once expired)."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message that could not be published; it can be listed and replayed."""

    message: Message
    """The message that could not be published."""
    shard: int
    """Its shard."""
    error: str
    """The last error."""
    attempts: int
    """Publish attempts made."""
    failed_at: datetime
    """When it was dead-lettered."""


DeadLetterPolicy = Literal["block", "skip"]
"""What a dead letter does to the later messages of its aggregate (the relay's
``on_dead_letter`` setting, passed to :meth:`Store.claim`):

* ``"block"`` (the default): they wait until the dead letter is replayed or discarded, so the
  broker never sees the aggregate out of order;
* ``"skip"``: they are published; a replayed dead letter then reaches the broker after them.
"""

BLOCKED_SAMPLE = 5
"""How many blocked aggregate ids :attr:`StoreStatus.blocked_sample` holds at most."""


class SlotStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A replication slot read by the relay (log tailing): ``status`` shows it."""

    name: str
    """The slot's name."""
    lag_bytes: int | None
    """WAL the slot holds back behind the server's current position; None if no slot."""
    lag_seconds: float | None
    """Age of the oldest transaction read but not confirmed (0 when caught up); None when no
    relay holds the slot."""
    active: bool
    """A connection is streaming the slot."""
    holder: str | None
    """The relay instance holding the slot's lease."""
    warning: str | None = None
    """What needs an operator's attention (lag past the threshold, no slot, lost WAL)."""


class StoreStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What ``outboxkit status`` shows.

    ``blocked_aggregates`` counts the aggregates that have a dead letter (``blocked_sample``:
    up to :data:`BLOCKED_SAMPLE` of their ids, smallest first); ``parked`` counts the pending
    messages that come after a dead letter of their aggregate (under ``on_dead_letter=block``
    they wait for it to be replayed or discarded). Both are part of the counts above them:
    ``parked <= pending``.
    """

    pending: int
    """Messages waiting to be published."""
    oldest_pending_age: float | None
    """Age in seconds of the oldest pending message; None if none."""
    dead_letters: int
    """Messages in the dead-letter store."""
    shard_count: int
    """Shards fixed at migration."""
    instances: list[str]
    """Live relay instances."""
    leases: list[LeaseInfo]
    """Every shard's lease."""
    blocked_aggregates: int = 0
    """Aggregates that have a dead letter."""
    blocked_sample: list[str] = msgspec.field(default_factory=list)
    """Up to ``BLOCKED_SAMPLE`` ids of blocked aggregates, smallest first."""
    parked: int = 0
    """Pending messages after a dead letter of their aggregate (part of ``pending``)."""
    slot: SlotStatus | None = None
    """The replication slot, for a store that tails the log."""


class StoreGauges(msgspec.Struct, frozen=True, kw_only=True):
    """The backlog as a relay's metrics show it, read every few seconds.

    A store may implement ``async def gauges(self) -> StoreGauges`` with queries that stay
    cheap however large the backlog (else the relay falls back to :meth:`Store.status`).
    ``pending_estimated`` says that ``pending`` (and ``dead_letters``) are estimates: exact
    counts are only promised up to a store-defined bound.
    """

    pending: int
    oldest_pending_age: float | None
    dead_letters: int
    pending_estimated: bool = False
    blocked_aggregates: int | None = None
    """Aggregates with a dead letter (held back under ``on_dead_letter="block"``); None if
    the store does not say."""


class Delivered(msgspec.Struct, frozen=True):
    """The broker acknowledged the message. ``duplicate``: the broker said it had it already."""

    duplicate: bool = False
    """The broker said it had the message already."""


class Failed(msgspec.Struct, frozen=True):
    """The message was not acknowledged. Retriable failures are retried with backoff; others
    go to the dead-letter store at once."""

    error: str
    """What went wrong, for logs and the dead-letter store."""
    retriable: bool
    """Retry with backoff (True) or dead-letter at once (False)."""


Outcome = Delivered | Failed
"""What a publisher returns for each message of a ``publish`` call."""


def not_sent(earlier: Message) -> Failed:
    """The outcome a publisher gives a message it did not send because ``earlier``, a message
    of the same aggregate earlier in the same ``publish`` call, failed (see
    :class:`Publisher`). Retriable: the relay publishes it again once ``earlier`` went out."""
    return Failed(
        f"not sent: earlier message {earlier.id} of aggregate {earlier.aggregate_id!r} failed",
        retriable=True,
    )


@runtime_checkable
class Store(Protocol):
    """Where messages wait: the relay side of an outbox store.

    Contract (checked by :class:`outboxkit.testing.StoreConformance`):

    * ``claim`` returns pending messages of the lease's shard in ``position`` order, at most
      ``limit``, without marking them. It skips an aggregate entirely from its first message
      that is not yet due (retry backoff), so no later message of it can overtake. With
      ``on_dead_letter="block"`` it also skips every message that comes after a dead letter
      of its aggregate (never one before it: a message is never held back by a later one).
      It never relies on a high-water mark: a message that commits late with a lower
      position is returned by the next claim.
    * ``replay`` puts dead letters back *in their original place*: after a replay, the
      aggregate's messages are claimed in the order they were written, the replayed ones
      among them (m1, m2 replayed, m3), whatever the policy.
    * ``replay`` and ``discard`` given ids change nothing if any of them is not a dead letter:
      they raise :class:`~outboxkit.errors.DeadLetterNotFoundError` naming those ids.
    * ``ack``, ``retry`` and ``dead_letter`` are *fenced*: they check, in the same database
      transaction, that the lease is still held with the same token and unexpired by the
      database clock, else they change nothing and raise :class:`~outboxkit.errors.LeaseLostError`.
    * Lease times are read from the database clock, never the host's.
    """

    @property
    def shard_count(self) -> int:
        """The number of shards fixed at migration (valid after :meth:`open`)."""
        ...

    async def open(self) -> None:
        """Connect and check the schema (raise ``SchemaMissingError`` if absent)."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    async def migrate(self, shard_count: int | None = None) -> None:
        """Create or upgrade the schema; re-runnable. ``shard_count`` is used on creation only."""

    # -- relay instances and leases -------------------------------------------------------
    async def heartbeat(self, owner: str, ttl: float) -> list[str]:
        """Mark ``owner`` alive for ``ttl`` seconds; return the live instances, sorted."""
        ...

    async def leave(self, owner: str) -> None:
        """Unregister ``owner`` so the others rebalance at once."""

    async def leases(self) -> list[LeaseInfo]:
        """All shards' leases, one per shard, ordered by shard."""
        ...

    async def acquire(self, owner: str, shard: int, ttl: float) -> Lease | None:
        """Take ``shard`` if it is free or expired (new token), or extend it if ``owner`` holds
        it; return None if another live owner holds it."""
        ...

    async def renew(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """Extend the given leases; return those still held (same owner and token, unexpired)."""
        ...

    async def release(self, leases: Sequence[Lease]) -> None:
        """Give up the given leases (only those still held with the same token)."""

    # -- messages -------------------------------------------------------------------------
    async def claim(
        self, lease: Lease, limit: int, *, on_dead_letter: DeadLetterPolicy = "block"
    ) -> list[Envelope]:
        """Pending, due messages of ``lease.shard`` in position order (see class docs);
        with ``on_dead_letter="block"``, none that comes after a dead letter of its
        aggregate."""
        ...

    async def ack(self, lease: Lease, envelopes: Sequence[Envelope]) -> None:
        """Remove published messages. Fenced."""

    async def retry(
        self, lease: Lease, envelopes: Sequence[Envelope], error: str, delay: float
    ) -> None:
        """Count a failed attempt and make the messages due again in ``delay`` s. Fenced."""

    async def dead_letter(self, lease: Lease, envelopes: Sequence[Envelope], error: str) -> None:
        """Move messages to the dead-letter store with ``error``. Fenced."""

    async def wait(self, timeout: float) -> Collection[int] | None:
        """Return when new messages may be pending (a wake-up) or after ``timeout`` seconds.

        Return the shards that got new messages when the store knows them (so only their
        workers claim), or None to wake every shard (a timeout, or no such knowledge). A
        store that names shards also names those that got messages between two calls: the
        next call returns them at once (the relay waits for one group of workers to finish
        before it calls again).

        A store whose every commit is followed by such a wake-up of its shard says so with
        :attr:`wakes_every_commit`.
        """

    @property
    def wakes_every_commit(self) -> bool:
        """True while every commit to a shard is followed by a :meth:`wait` naming it (e.g.
        while a LISTEN connection is up). A worker whose claim came back short then waits for
        the wake-up instead of claiming again at once: no empty claim after each batch. False
        when in doubt: polling stays correct."""
        ...

    # -- operations -----------------------------------------------------------------------
    async def status(self) -> StoreStatus:
        """Pending count, oldest pending age (database clock), dead letters, blocked
        aggregates and parked messages, leases."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        ...

    async def replay(self, ids: Sequence[UUID] | None = None) -> int:
        """Move dead letters (all if ``ids`` is None) back to the outbox, each to its
        original place in its aggregate's order; return how many. Given ids, raise
        :class:`~outboxkit.errors.DeadLetterNotFoundError` (and move none) if any of them
        is not a dead letter."""
        ...

    async def discard(self, ids: Sequence[UUID] | None = None) -> int:
        """Delete dead letters (all if ``ids`` is None) for good, which unblocks their
        aggregates; return how many. Given ids, raise
        :class:`~outboxkit.errors.DeadLetterNotFoundError` (and delete none) if any of them
        is not a dead letter."""
        ...

    async def purge(self, older_than: float) -> int:
        """Delete the dead letters that failed more than ``older_than`` seconds ago
        (database clock); return how many."""
        ...


@runtime_checkable
class Publisher(Protocol):
    """Sends messages to a broker.

    Contract (checked by :class:`outboxkit.testing.PublisherConformance`): ``publish`` gets
    messages in position order and returns one outcome per message, in the same order.
    A message counts as delivered only once the broker acknowledged it. For one aggregate,
    a later message must never reach the broker before an earlier one of the same call;
    once a message of an aggregate fails, the later messages of that aggregate in the call
    are not sent and are reported :func:`not_sent` (``Failed(retriable=True)``); its earlier
    messages are never held back by that failure. An aggregate is its ``aggregate_id``.
    ``publish`` is called concurrently (one call per shard at a time).
    """

    async def open(self) -> None:
        """Connect (raise ``PublisherUnavailableError`` with a clear message if unreachable)."""

    async def close(self) -> None:
        """Flush and disconnect. Idempotent."""

    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        """Publish ``messages``; one outcome each, in order."""
        ...


@runtime_checkable
class ReportsDeliveries(Protocol):
    """Optional publisher capability: report deliveries while a call is still in flight.

    A publisher whose broker acknowledges a call's messages in several steps (Kafka: one
    produce request per partition batch) implements ``publish_reporting``: the same contract
    as ``publish``, plus ``delivered(indices)`` called (synchronously, from the publishing
    task) with the positions in ``messages`` of messages the broker has just acknowledged.
    Each index is reported at most once, only once the broker acknowledged it, and its final
    outcome must be ``Delivered``; every message the call delivers is reported before the call
    returns (``PublisherConformance`` checks this). The relay then acknowledges in the store,
    while the call is still running, each aggregate's messages up to its first one not
    reported delivered, so a relay that crashes mid-call re-sends only what the store had not
    acknowledged yet. Publishers without it are settled when ``publish`` returns.
    """

    async def publish_reporting(
        self, messages: Sequence[Message], delivered: Callable[[Sequence[int]], None]
    ) -> list[Outcome]:
        """``publish(messages)``, calling ``delivered`` as acknowledgements arrive."""
        ...


@runtime_checkable
class WakesEarly(Protocol):
    """Optional store capability: wake-ups that may arrive before the rows they name are
    visible to a claim.

    A store woken by a reader of the database's log (PostgreSQL's table store woken by a
    replication slot) can name a shard as soon as a commit is in the log, a moment before
    the committing transaction is visible to other sessions. A claim started by such a
    wake-up may then find nothing, and no later wake-up names the row. When
    ``wakes_early`` is true, a claim a named wake-up started that finds nothing is repeated
    after :data:`outboxkit.relay.worker.EARLY_WAKE_RETRIES` seconds instead of waiting for
    the next poll.
    """

    @property
    def wakes_early(self) -> bool:
        """True if a wake-up may precede the visibility of the rows it names."""
        ...


@runtime_checkable
class Relay(Protocol):
    """Moves messages from a Store to a Publisher until stopped."""

    async def run(self) -> None:
        """Relay until :meth:`stop` is called, then drain in-flight work and release leases."""

    def stop(self) -> None:
        """Ask :meth:`run` to finish gracefully."""
