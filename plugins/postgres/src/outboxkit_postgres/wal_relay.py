"""The WAL-only relay: one fenced reader of the slot publishes what writers emitted.

:class:`WalTail` runs beside the sharded relay (which serves the table: messages parked behind
a dead letter, and replayed ones). It holds the slot's lease (``<table>_slot_lease``), reads
the slot in commit order, publishes with order per aggregate and concurrency across aggregates
(one aggregate is in at most one publish call at a time), and confirms the slot only up to the
end of the last transaction below which every message is done: acknowledged by the broker,
dead-lettered, or parked in the table. A failed message is retried with backoff (its
aggregate waits); after ``max_attempts`` it goes to ``<table>_dead`` and, with
``on_dead_letter=block``, its aggregate's later messages are parked in the outbox table behind
it (the table relay publishes them once the dead letter is replayed or discarded).

A new holder first ends any connection still streaming the slot (``pg_terminate_backend``),
so a paused holder that lost its lease can confirm nothing afterwards; its dead-letter and
park writes are fenced by the lease token.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import msgspec

from outboxkit.message import Message
from outboxkit.metrics import RelayMetrics
from outboxkit.protocols import Delivered, Failed, Outcome, Publisher
from outboxkit.relay.backoff import backoff_delay
from outboxkit.relay.log import brief, log
from outboxkit.relay.settings import RelaySettings
from outboxkit_postgres.codec import decode_wal_messages
from outboxkit_postgres.pgoutput import Begin, Commit, LogicalMessage, decode
from outboxkit_postgres.slot import SlotBusyError, SlotStream

if TYPE_CHECKING:
    from outboxkit_postgres.wal_store import PostgresWalStore

__all__ = ["SessionLost", "SlotHolder", "SlotSession", "WalTail"]

MAX_CALLS = 8
"""Publish calls in flight at once (each holds whole aggregates)."""
READ_LIMIT = 2000
"""Records read from the socket per turn."""
HEARTBEAT = 1.0
"""Seconds between confirmations of the server's WAL end while nothing is pending, so an
idle outbox never holds WAL back."""
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class _Txn(msgspec.Struct, gc=False):
    end_lsn: int
    remaining: int
    committed_at: datetime


class _Item(msgspec.Struct, gc=False):
    """A message read from the slot until it is settled; like the messages themselves, kept
    out of the cyclic garbage collector (thousands are in flight)."""

    message: Message
    txn: _Txn
    attempts: int = 0


@dataclass(eq=False)
class _Aggregate:
    queue: deque[_Item] = field(default_factory=deque)
    busy: bool = False
    """In a publish call, waiting for a retry, or being dead-lettered."""


class SessionLost(Exception):
    """The slot lease was lost: drop everything read (the next holder reads it again)."""


class SlotHolder:
    """Takes a slot's lease when it is free and reads the slot while holding it; one
    :meth:`session` per tenure."""

    def __init__(
        self, store: PostgresWalStore, settings: RelaySettings, metrics: RelayMetrics, owner: str
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._owner = owner
        self.holding = False
        """True while this instance holds the slot's lease and reads it."""

    def session(self, token: int) -> SlotSession:
        """What to do with the slot during one tenure of its lease."""
        raise NotImplementedError

    async def run(self) -> None:
        """Take the slot's lease when free and read it; forever (until cancelled)."""
        ttl = self._settings.lease_ttl
        while True:
            try:
                token = await self._store.slot_acquire(self._owner, ttl)
            except Exception as exc:
                log.warning("slot lease: acquire failed (%s)", brief(exc))
                token = None
            if token is None:
                await anyio.sleep(ttl / 3)
                continue
            self.holding = True
            log.info("slot %s: lease taken (token %d)", self._store.slot_name, token)
            try:
                await self.session(token).run()
            except Exception as exc:
                cause = _cause(exc)
                if isinstance(cause, SessionLost):
                    log.warning("slot %s: %s; reading stops", self._store.slot_name, cause)
                else:
                    log.warning("slot %s: reading failed (%s)", self._store.slot_name, brief(cause))
                    await anyio.sleep(min(1.0, ttl / 3))
            finally:
                self.holding = False
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    try:
                        await self._store.slot_release(self._owner, token)
                    except Exception as exc:
                        log.warning("slot lease: release failed (%s)", brief(exc))


def _cause(exc: BaseException) -> BaseException:
    """The exception that ended a session: a lost lease wins over what it caused."""
    if isinstance(exc, BaseExceptionGroup):
        causes = [_cause(inner) for inner in exc.exceptions]
        lost = [c for c in causes if isinstance(c, SessionLost)]
        return (lost or causes)[0]
    return exc


class SlotSession:
    """One tenure of a slot's lease: the stream, opened once any former reader is ended, and
    the lease renewed on its own task (a renewal refused ends the session)."""

    def __init__(self, holder: SlotHolder, token: int) -> None:
        self.holder = holder
        self.store = holder._store
        self.token = token
        self.stream: SlotStream | None = None
        self.heartbeat_at = 0.0

    async def run(self) -> None:
        """Read the slot until the lease is lost (or cancelled)."""
        raise NotImplementedError

    def pending_since(self) -> datetime | None:
        """Commit time of the oldest transaction read but not confirmed."""
        return None

    async def open_stream(self) -> SlotStream:
        store = self.store
        for attempt in range(20):
            await store.slot_fence(self.holder._owner, self.token)
            await store.slot_terminate_readers()
            stream = store.slot_stream()
            try:
                await stream.open()
                self.stream = stream
                self.heartbeat_at = anyio.current_time()
                return stream
            except SlotBusyError:
                await anyio.sleep(0.1 * (attempt + 1))
        raise OSError(f"slot {store.slot_name} stays busy with another reader")

    async def next_records(
        self, stream: SlotStream, *, in_transaction: bool = False
    ) -> list[tuple[int, bytes]]:
        """The next records of the slot, waiting for them. While none come, and no transaction
        is half read or read but unconfirmed (:meth:`pending_since`), the WAL end is confirmed
        every :data:`HEARTBEAT` seconds so that the server can recycle WAL."""
        while True:
            records = stream.read(READ_LIMIT)
            if records:
                return records
            now = anyio.current_time()
            idle = not in_transaction and self.pending_since() is None
            if idle and now - self.heartbeat_at >= HEARTBEAT:
                self.confirm(stream.wal_end)
                self.heartbeat_at = now
            await stream.wait(HEARTBEAT)

    def confirm(self, lsn: int) -> None:
        """Let the server forget the slot's WAL below ``lsn``."""
        if self.stream is not None:
            self.stream.confirm(lsn)

    async def keep_lease(self) -> None:
        holder = self.holder
        ttl = holder._settings.lease_ttl
        deadline = anyio.current_time() + ttl
        while True:
            await anyio.sleep(ttl / 3)
            try:
                held = await self.store.slot_renew(
                    holder._owner, self.token, ttl, self.pending_since()
                )
            except Exception as exc:
                log.warning("slot lease: renew failed (%s)", brief(exc))
                if anyio.current_time() < deadline - ttl / 3:
                    continue
                held = False
            if not held:
                holder._metrics.lease_lost += 1
                raise SessionLost("slot lease lost")
            deadline = anyio.current_time() + ttl


class WalTail(SlotHolder):
    """Reads the WAL-only outbox's slot for one relay instance, while it holds the lease."""

    def __init__(
        self,
        store: PostgresWalStore,
        publisher: Publisher,
        settings: RelaySettings,
        metrics: RelayMetrics,
        owner: str,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(store, settings, metrics, owner)
        self._publisher = publisher
        self._rng = rng or random.Random()
        self._prefix = store.names.wal_prefix

    def session(self, token: int) -> SlotSession:
        return _Session(self, token)


class _Session(SlotSession):
    """Stream, publish, confirm."""

    def __init__(self, tail: WalTail, token: int) -> None:
        super().__init__(tail, token)
        self.t = tail
        self.txns: deque[_Txn] = deque()
        self.aggregates: dict[str, _Aggregate] = {}
        self.ready: dict[str, None] = {}
        self.calls = 0
        self.in_table: set[str] = set()
        self.added_to_table: set[str] = set()
        self.to_park: list[_Item] = []
        self.park_lock = anyio.Lock()
        self.progress = anyio.Event()
        """Set when a message is done (the reader waits for it under back-pressure)."""
        self.park_wanted = anyio.Event()
        self.confirmed = 0
        self.pending_items = 0
        self.task_group: anyio.abc.TaskGroup | None = None

    async def run(self) -> None:
        settings = self.t._settings
        block = settings.on_dead_letter == "block"
        self.in_table = set(await self.store.wal_table_aggregates(block))
        stream = await self.open_stream()
        try:
            async with anyio.create_task_group() as tg:
                self.task_group = tg
                tg.start_soon(self.keep_lease)
                tg.start_soon(self._refresh_table_aggregates, block)
                tg.start_soon(self._parker)
                await self._read(stream)
        finally:
            stream.close()

    def pending_since(self) -> datetime | None:
        return self.txns[0].committed_at if self.txns else None

    # -- reading ----------------------------------------------------------------------------
    async def _read(self, stream: SlotStream) -> None:
        limit = self.t._settings.batch_size * 20
        current: list[Message] | None = None
        while True:
            if self.pending_items >= limit:  # back-pressure: let publishing catch up
                self.progress = anyio.Event()
                await self.progress.wait()
                continue
            # no records come while it waits, so pending_items cannot grow meanwhile
            records = await self.next_records(stream, in_transaction=current is not None)
            for _start, payload in records:
                record = decode(payload)
                if isinstance(record, LogicalMessage):
                    if record.prefix == self.t._prefix and current is not None:
                        current.extend(decode_wal_messages(record.content))
                elif isinstance(record, Begin):
                    current = []
                elif isinstance(record, Commit):
                    committed = _PG_EPOCH + timedelta(microseconds=record.timestamp)
                    self._committed(current or [], _Txn(record.end_lsn, 0, committed))
                    current = None
            self._dispatch()

    def _committed(self, messages: list[Message], txn: _Txn) -> None:
        txn.remaining = len(messages)
        self.txns.append(txn)
        self.pending_items += len(messages)
        for message in messages:
            item = _Item(message, txn)
            aggregate_id = message.aggregate_id
            aggregate = self.aggregates.get(aggregate_id)
            if aggregate is None and aggregate_id in self.in_table:
                self.to_park.append(item)
                self.park_wanted.set()
                continue
            if aggregate is None:
                aggregate = self.aggregates[aggregate_id] = _Aggregate()
            aggregate.queue.append(item)
            if not aggregate.busy:
                self.ready[aggregate_id] = None
        if not messages:
            self._advance()

    # -- publishing -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        size = self.t._settings.batch_size
        while self.ready and self.calls < MAX_CALLS:
            batch: list[_Item] = []
            while self.ready and len(batch) < size:
                aggregate_id = next(iter(self.ready))
                del self.ready[aggregate_id]
                aggregate = self.aggregates[aggregate_id]
                aggregate.busy = True
                while aggregate.queue and len(batch) < size:
                    batch.append(aggregate.queue.popleft())
            self.calls += 1
            assert self.task_group is not None
            self.task_group.start_soon(self._publish, batch)

    async def _publish(self, batch: list[_Item]) -> None:
        try:
            try:
                outcomes: Sequence[Outcome] = await self.t._publisher.publish(
                    [item.message for item in batch]
                )
            except Exception as exc:
                outcomes = [Failed(f"publish failed: {brief(exc)}", retriable=True)] * len(batch)
            await self._settle(batch, outcomes)
        finally:
            self.calls -= 1
            self._dispatch()

    async def _settle(self, batch: list[_Item], outcomes: Sequence[Outcome]) -> None:
        settings = self.t._settings
        metrics = self.t._metrics
        metrics.batches += 1
        by_aggregate: dict[str, list[tuple[_Item, Outcome]]] = {}
        for item, outcome in zip(batch, outcomes, strict=True):
            by_aggregate.setdefault(item.message.aggregate_id, []).append((item, outcome))
        for aggregate_id, pairs in by_aggregate.items():
            aggregate = self.aggregates[aggregate_id]
            for index, (item, outcome) in enumerate(pairs):
                if isinstance(outcome, Delivered):
                    metrics.published += 1
                    metrics.duplicates += outcome.duplicate
                    self._done(item)
                    continue
                rest = [later for later, _ in pairs[index + 1 :]]
                item.attempts += 1
                if outcome.retriable and item.attempts < settings.max_attempts:
                    metrics.retried += 1
                    aggregate.queue.extendleft(reversed([item, *rest]))
                    delay = backoff_delay(
                        item.attempts - 1,
                        settings.backoff_initial,
                        settings.backoff_max,
                        self.t._rng,
                    )
                    assert self.task_group is not None
                    self.task_group.start_soon(self._wake_after, aggregate_id, delay)
                    break
                aggregate.queue.extendleft(reversed(rest))
                self.t._metrics.dead_lettered += 1
                await self._dead_letter(aggregate_id, item, outcome.error)
                break
            else:
                self._release(aggregate_id)

    async def _wake_after(self, aggregate_id: str, delay: float) -> None:
        await anyio.sleep(delay)
        self._release(aggregate_id)
        self._dispatch()

    def _release(self, aggregate_id: str) -> None:
        aggregate = self.aggregates[aggregate_id]
        aggregate.busy = False
        if aggregate.queue:
            self.ready[aggregate_id] = None
        else:
            del self.aggregates[aggregate_id]

    async def _dead_letter(self, aggregate_id: str, item: _Item, error: str) -> None:
        """Move ``item`` to the dead-letter table; with ``block``, park its aggregate's later
        messages (and those still to come) in the outbox table behind it."""
        block = self.t._settings.on_dead_letter == "block"
        async with self.park_lock:
            if not await self.store.wal_dead_letter(
                self.t._owner, self.token, [item.message], [item.attempts], error
            ):
                raise SessionLost("slot lease lost (dead letter refused)")
            log.warning(
                "message %s of aggregate %r dead-lettered after %d attempts: %s",
                item.message.id,
                aggregate_id,
                item.attempts,
                error,
            )
            self._done(item)
            if not block:
                self._release(aggregate_id)
                return
            aggregate = self.aggregates.pop(aggregate_id)
            self.ready.pop(aggregate_id, None)
            self.in_table.add(aggregate_id)
            self.added_to_table.add(aggregate_id)
            await self._park(list(aggregate.queue))

    async def _parker(self) -> None:
        while True:
            while not self.to_park:
                self.park_wanted = anyio.Event()
                await self.park_wanted.wait()
            async with self.park_lock:
                items, self.to_park = self.to_park, []
                await self._park(items)

    async def _park(self, items: list[_Item]) -> None:
        if not items:
            return
        if not await self.store.wal_park(self.t._owner, self.token, [i.message for i in items]):
            raise SessionLost("slot lease lost (park refused)")
        for item in items:
            self._done(item)

    async def _refresh_table_aggregates(self, block: bool) -> None:
        """Forget aggregates whose table messages are all published (every poll interval)."""
        while True:
            await anyio.sleep(max(self.t._settings.poll_interval, 1.0))
            try:
                async with self.park_lock:
                    self.added_to_table = set()
                    found = await self.store.wal_table_aggregates(block)
                    waiting = {item.message.aggregate_id for item in self.to_park}
                    self.in_table = set(found) | self.added_to_table | waiting
            except Exception as exc:
                log.warning("slot %s: refresh failed (%s)", self.store.slot_name, brief(exc))

    # -- confirming -------------------------------------------------------------------------
    def _done(self, item: _Item) -> None:
        self.pending_items -= 1
        item.txn.remaining -= 1
        if item.txn.remaining == 0:
            self._advance()
        self.progress.set()

    def _advance(self) -> None:
        end = None
        while self.txns and self.txns[0].remaining == 0:
            end = self.txns.popleft().end_lsn
        if end is not None:
            self.confirm(end)

    def confirm(self, lsn: int) -> None:
        if lsn > self.confirmed and self.stream is not None:
            self.stream.confirm(lsn)
            self.confirmed = lsn
