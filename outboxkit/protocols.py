"""The seams of outboxkit: Store, Publisher and Relay protocols and the types they exchange.

A store plugin implements :class:`Store` (its *writer* API, which runs inside the caller's
transaction, is plugin-specific); a publisher plugin implements :class:`Publisher`. The
conformance suites in :mod:`outboxkit.testing` check both contracts against a real backend.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

import msgspec

from outboxkit.message import Message

__all__ = [
    "DeadLetter",
    "Delivered",
    "Envelope",
    "Failed",
    "Lease",
    "LeaseInfo",
    "Outcome",
    "Publisher",
    "Relay",
    "Store",
    "StoreStatus",
    "not_sent",
]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed message with the store's bookkeeping.

    ``position`` orders messages within a shard (Postgres: the sequence); ``attempts`` counts
    failed publish attempts so far; ``ref`` is a store-private locator (e.g. a document id).
    ``sequence``, if the store keeps one, is the message's number within its aggregate: it
    grows in the aggregate's commit order and is the same at every claim of the message; the
    relay sends it in the ``outboxkit-sequence`` header so consumers can tell an old event from
    a new one (Postgres and SQLite: the position; MongoDB: the entry's append count).
    """

    message: Message
    shard: int
    position: int
    attempts: int = 0
    ref: str | int | None = None
    sequence: int | None = None


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A held shard lease. ``token`` is the fencing token: it grows with every new owner."""

    shard: int
    owner: str
    token: int


class LeaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the lease table as seen now. ``expires_in`` is in seconds by the database clock
    (negative once expired); ``owner`` is None for a shard never leased or released."""

    shard: int
    owner: str | None
    token: int
    expires_in: float | None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message that could not be published; it can be listed and replayed."""

    message: Message
    shard: int
    error: str
    attempts: int
    failed_at: datetime


class StoreStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What ``outboxkit status`` shows."""

    pending: int
    oldest_pending_age: float | None
    dead_letters: int
    shard_count: int
    instances: list[str]
    leases: list[LeaseInfo]


class Delivered(msgspec.Struct, frozen=True):
    """The broker acknowledged the message. ``duplicate``: the broker said it had it already."""

    duplicate: bool = False


class Failed(msgspec.Struct, frozen=True):
    """The message was not acknowledged. Retriable failures are retried with backoff; others
    go to the dead-letter store at once."""

    error: str
    retriable: bool


Outcome = Delivered | Failed


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
      that is not yet due (retry backoff), so no later message of it can overtake. It never
      relies on a high-water mark: a message that commits late with a lower position is
      returned by the next claim.
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
    async def claim(self, lease: Lease, limit: int) -> list[Envelope]:
        """Pending, due messages of ``lease.shard`` in position order (see class docs)."""
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

        A store whose every commit is followed by such a wake-up of its shard may say so
        with a ``wakes_every_commit`` attribute that is true while it holds (e.g. while its
        LISTEN connection is up). A worker whose claim came back short then waits for the
        wake-up instead of claiming again at once: no empty claim after each batch.
        """

    # -- operations -----------------------------------------------------------------------
    async def status(self) -> StoreStatus:
        """Pending count, oldest pending age (database clock), dead letters, leases."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        ...

    async def replay(self, ids: Sequence[UUID] | None = None) -> int:
        """Move dead letters (all if ``ids`` is None) back to the outbox; return how many."""
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
class Relay(Protocol):
    """Moves messages from a Store to a Publisher until stopped."""

    async def run(self) -> None:
        """Relay until :meth:`stop` is called, then drain in-flight work and release leases."""

    def stop(self) -> None:
        """Ask :meth:`run` to finish gracefully."""
