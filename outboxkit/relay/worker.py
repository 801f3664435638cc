"""The pipeline of one owned shard: claim, publish, settle, repeat."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import anyio

from outboxkit.errors import LeaseLostError, StoreUnavailableError
from outboxkit.metrics import RelayMetrics
from outboxkit.protocols import (
    Envelope,
    Failed,
    Lease,
    Outcome,
    Publisher,
    ReportsDeliveries,
    Store,
    WakesEarly,
)
from outboxkit.relay.backoff import backoff_delay
from outboxkit.relay.early_acks import EarlyAcks
from outboxkit.relay.log import brief, log
from outboxkit.relay.merging import MiscountError, PublishMerger
from outboxkit.relay.sequencing import sequenced
from outboxkit.relay.settings import RelaySettings
from outboxkit.relay.settlement import Settlement, settle
from outboxkit.relay.wakeup import Wakeup

__all__ = ["EARLY_WAKE_RETRIES", "RelayContext", "ShardWorker"]

EARLY_WAKE_RETRIES = (0.01, 0.05)
"""Seconds after which a claim that a named wake-up started and that found nothing is
repeated, with a store whose wake-ups may precede the rows' visibility
(:class:`~outboxkit.protocols.WakesEarly`)."""

T = TypeVar("T")


@dataclass(frozen=True)
class RelayContext:
    """What every shard worker of one relay shares."""

    store: Store
    publisher: Publisher
    settings: RelaySettings
    metrics: RelayMetrics
    wakeup: Wakeup
    rng: random.Random
    merger: PublishMerger
    """Merges the publish calls of workers woken together."""


class ShardWorker:
    """Relays one shard under one lease, one batch at a time.

    The next claim starts only once the previous batch is settled, so claims of a shard never
    overlap and per-aggregate order needs no in-flight bookkeeping; shards run concurrently.
    ``deadline`` (event-loop clock) is when the lease surely expires unless renewed: the worker
    claims nothing past it.
    """

    def __init__(self, lease: Lease, deadline: float, context: RelayContext) -> None:
        self.lease = lease
        self.deadline = deadline
        self.busy = False
        """True while a claimed batch is being published and settled."""
        self.idle = False
        """True when the last claim found nothing."""
        self.stopping = False
        self.shed = False
        """Stopped to give the shard to another instance (release it when done)."""
        self.lost = False
        self._scope = anyio.CancelScope()
        self._store = context.store
        self._publisher = context.publisher
        self._merger = context.merger
        self._settings = context.settings
        self._metrics = context.metrics
        self._wakeup = context.wakeup
        self._rng = context.rng
        self._reports = context.settings.ack_as_delivered and isinstance(
            self._publisher, ReportsDeliveries
        )
        """The publisher reports deliveries mid-call: ack them early (:mod:`early_acks`)."""
        self._early = isinstance(self._store, WakesEarly) and self._store.wakes_early
        """Wake-ups may precede the rows' visibility: an empty named claim is repeated."""
        self._early_retries = 0
        self._next_due: float | None = None
        self._noticed = False
        """The last wake-up named this shard (a writer's notice, not a poll)."""

    @property
    def shard(self) -> int:
        """The shard this worker relays."""
        return self.lease.shard

    def stop(self, *, shed: bool = False) -> None:
        """Stop claiming; a batch in flight is still published and settled first."""
        self.stopping = True
        self.shed = self.shed or shed
        if not self.busy:
            self._scope.cancel()

    def cancel(self, *, lost: bool) -> None:
        """Stop at once, abandoning a batch in flight (it will be claimed again)."""
        self.stopping = True
        self.lost = self.lost or lost
        self._scope.cancel()

    async def run(self) -> None:
        """Relay until stopped, cancelled or the lease is lost."""
        with self._scope:
            try:
                await self._loop()
            except LeaseLostError:
                self.lost = True
            finally:
                self._wakeup.unpark(self.shard)
                self._wakeup.done(self.shard)

    async def _loop(self) -> None:
        while not self.stopping:
            if anyio.current_time() >= self.deadline:
                raise LeaseLostError(f"lease of shard {self.shard} was not renewed in time")
            wake = self._wakeup.event(self.shard)
            try:
                envelopes = await self._bounded(
                    "claim",
                    self._store.claim(
                        self.lease,
                        self._settings.batch_size,
                        on_dead_letter=self._settings.on_dead_letter,
                    ),
                )
            except LeaseLostError:
                raise
            except Exception as exc:
                log.warning("shard %d: claim failed (%s); retrying", self.shard, brief(exc))
                await self._pause(wake)
                continue
            self.idle = not envelopes
            if not envelopes:
                await self._pause(wake, retry=self._early_retry())
                continue
            self._early_retries = 0
            self.busy = settled = True
            try:
                await self._relay(envelopes)
            except LeaseLostError:
                raise
            except Exception as exc:
                log.warning(
                    "shard %d: settling a batch failed (%s); it will be claimed again",
                    self.shard,
                    brief(exc),
                )
                settled = False
            finally:
                self.busy = False
            if not settled or self._drained(envelopes, wake):
                await self._pause(wake)
            else:
                self._wakeup.done(self.shard)

    def _drained(self, claimed: Sequence[Envelope], wake: anyio.Event) -> bool:
        """True if claiming again now would find nothing: the claim came back short, the
        store wakes this shard after every commit and has not since the claim began, and the
        writers do notify (the wake-up that led to this claim named the shard; writers that
        do not notify leave only polls, and then the worker claims again at once)."""
        return (
            len(claimed) < self._settings.batch_size
            and not wake.is_set()
            and self._noticed
            and self._store.wakes_every_commit
        )

    async def _bounded(self, what: str, call: Awaitable[T]) -> T:
        """``call``, abandoned after ``store_timeout`` s: a store call that hangs (a lost
        connection, a stuck server) must not hold the shard forever while the lease keeper
        keeps renewing its lease."""
        limit = self._settings.store_timeout
        with anyio.move_on_after(limit):
            return await call
        raise StoreUnavailableError(f"{what} on shard {self.shard} took over {limit:g}s")

    def _early_retry(self) -> float | None:
        """Seconds until an empty claim is repeated because its named wake-up may have come
        before the rows were visible (:class:`~outboxkit.protocols.WakesEarly`); None when
        it is not (any more)."""
        if not (self._early and self._noticed) or self._early_retries >= len(EARLY_WAKE_RETRIES):
            self._early_retries = 0
            return None
        self._early_retries += 1
        return EARLY_WAKE_RETRIES[self._early_retries - 1]

    async def _pause(self, wake: anyio.Event, retry: float | None = None) -> None:
        """Wait for a wake-up, the poll interval (``retry`` s if given), or the next retry
        coming due. An early retry keeps the shard marked as named."""
        if self.stopping:
            return
        timeout = self._settings.poll_interval if retry is None else retry
        now = anyio.current_time()
        if self._next_due is not None:
            timeout = min(timeout, max(0.0, self._next_due - now))
        self._noticed = self._noticed and retry is not None  # a wake-up below replaces it
        self._wakeup.park(self.shard)
        try:
            with anyio.move_on_after(timeout):
                await wake.wait()
                self._noticed = self._wakeup.noticed(self.shard)
        finally:
            self._wakeup.unpark(self.shard)
        if self._next_due is not None and anyio.current_time() >= self._next_due:
            self._next_due = None

    async def _relay(self, envelopes: list[Envelope]) -> None:
        # a lone message's delivery ends the call: nothing to ack early (and a task saved)
        early = EarlyAcks(envelopes, self._ack) if self._reports and len(envelopes) > 1 else None
        if early is None:
            outcomes = await self._publish(envelopes)
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(early.run)
                try:
                    outcomes = early.final(await self._publish(envelopes, early.delivered))
                finally:
                    early.close()
        self._metrics.batches += 1
        plan = settle(
            envelopes,
            outcomes,
            max_attempts=self._settings.max_attempts,
            delay_for=self._delay,
        )
        if early is not None:
            plan.delivered = early.not_acked(plan.delivered)
        await self._apply(plan)

    async def _publish(
        self,
        envelopes: Sequence[Envelope],
        delivered: Callable[[Sequence[int]], None] | None = None,
    ) -> Sequence[Outcome]:
        """Publish a batch (reporting deliveries to ``delivered`` if given), in a publisher
        call that the batches of other shards woken together may share (:mod:`merging`); a
        publisher exception fails the whole batch, retriably."""
        messages = sequenced(envelopes)
        try:
            return await self._merger.publish(messages, delivered)
        except MiscountError as exc:
            error = str(exc)
        except Exception as exc:
            error = f"publisher raised {brief(exc)}"
        log.warning("shard %d: %s; retrying %d messages", self.shard, error, len(envelopes))
        return [Failed(error, retriable=True)] * len(envelopes)

    async def _ack(self, envelopes: list[Envelope]) -> None:
        await self._bounded("ack", self._store.ack(self.lease, envelopes))
        self._metrics.published += len(envelopes)
        created = envelopes[-1].message.created_at
        self._metrics.last_publish_lag = (datetime.now(UTC) - created).total_seconds()

    def _delay(self, attempts: int) -> float:
        s = self._settings
        return backoff_delay(attempts, s.backoff_initial, s.backoff_max, self._rng)

    async def _apply(self, plan: Settlement) -> None:
        """Ack first (the common case, one call), then retries and dead letters by group."""
        if plan.delivered:
            await self._ack(plan.delivered)
        self._metrics.duplicates += plan.duplicates
        for (error, delay), group in plan.retry.items():
            await self._bounded("retry", self._store.retry(self.lease, group, error, delay))
            self._metrics.retried += len(group)
            due = anyio.current_time() + delay
            self._next_due = due if self._next_due is None else min(self._next_due, due)
            log.warning(
                "shard %d: %d messages failed (%s); retry in %.2fs",
                self.shard,
                len(group),
                error,
                delay,
            )
        for error, group in plan.dead.items():
            await self._bounded("dead letter", self._store.dead_letter(self.lease, group, error))
            self._metrics.dead_lettered += len(group)
            log.warning("shard %d: %d messages dead-lettered (%s)", self.shard, len(group), error)
            if self._settings.on_dead_letter == "block":
                log.warning(
                    "shard %d: aggregates %s blocked: their later messages wait until the dead "
                    "letters are replayed or discarded (on_dead_letter=block)",
                    self.shard,
                    ", ".join(sorted({repr(e.message.aggregate_id) for e in group})),
                )
