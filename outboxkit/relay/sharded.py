"""The sharded relay: moves messages from a Store to a Publisher, shard by shard.

Tasks of a running :class:`ShardedRelay`:

* a **lease keeper** (:class:`~outboxkit.relay.leases.LeaseKeeper`) heartbeats, renews leases and
  rebalances shards to a fair share, on its own task so publishing never starves it;
* one **shard worker** per held lease (:class:`~outboxkit.relay.worker.ShardWorker`): claim a
  batch, publish it, ack / retry / dead-letter it, repeat;
* one **wake-up** task (:class:`~outboxkit.relay.wakeup.Wakeup`) waiting on ``store.wait`` and
  waking idle workers, in groups: the shards named while one group is at work go together
  in the next (so a trickle of commits shares claims, produce requests and acks).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable

import anyio

from outboxkit.closing import CLOSE_TIMEOUT, close_within
from outboxkit.errors import (
    ConfigurationError,
    PublisherUnavailableError,
    ServerUnavailableError,
    StoreUnavailableError,
)
from outboxkit.metrics import RelayMetrics
from outboxkit.protocols import Publisher, Store
from outboxkit.relay.backoff import backoff_delay
from outboxkit.relay.leases import LeaseKeeper
from outboxkit.relay.log import brief, log
from outboxkit.relay.merging import PublishMerger
from outboxkit.relay.pool import WorkerPool
from outboxkit.relay.settings import RelaySettings
from outboxkit.relay.wakeup import Wakeup
from outboxkit.relay.worker import RelayContext

__all__ = ["RelayMetrics", "ShardedRelay", "default_instance_id"]

CLOSE_STEP = CLOSE_TIMEOUT + 1.0
"""Seconds a shutdown step may take: a plugin's ``close`` gives up its server after
:data:`~outboxkit.closing.CLOSE_TIMEOUT`, the relay gives up the step a second later."""
STARTUP_BACKOFF_INITIAL = 0.5
"""Seconds before the second attempt to reach a server at start (then doubling)."""
STARTUP_BACKOFF_MAX = 10.0
"""Largest pause between two attempts to reach a server at start."""
LOG_DRAIN_WAIT = 10.0
"""Seconds ``exit_when_idle`` waits for a log-tailing store's reader to reach the log's end
as of the check (then it checks again from the start)."""


def default_instance_id() -> str:
    """``"<hostname>-<pid>-<4 random hex digits>"``: unique across hosts and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class ShardedRelay:
    """Relays messages from ``store`` to ``publisher`` on the shards this instance leases.

    Run it with ``await relay.run()``. It first opens the store and the publisher, trying
    again while their servers cannot be reached (a warning per attempt), for at most
    ``startup_timeout`` if set. :meth:`stop` (e.g. from a SIGTERM handler) makes it stop
    claiming, finish and settle in-flight batches (at most ``drain_timeout`` seconds), release
    its leases and leave the instance table (at most 6 s), close publisher and store (at most
    6 s, whatever their servers do), and return; :meth:`abort` makes it return at once. With
    ``exit_when_idle`` it also stops by itself once nothing is left to publish (messages
    parked behind a dead letter, with ``on_dead_letter="block"``, are not; a store that tails
    a log, with ``log_drained``, must also have published all it committed before the check).
    A relay runs once.
    """

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        settings: RelaySettings | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings if settings is not None else RelaySettings()
        """The relay's settings."""
        self.owner = self.settings.instance_id or default_instance_id()
        """This instance's name in the lease table."""
        self.metrics = RelayMetrics()
        """Counters of the relay's work (claimed, published, retried, ...)."""
        self._store = store
        self._publisher = publisher
        self._rng = rng or random.Random()
        self._stop_requested = False
        self._stop_event: anyio.Event | None = None
        self._started = False
        self._aborted = False
        self._run_scope: anyio.CancelScope | None = None
        self._cleanups: set[anyio.CancelScope] = set()
        self._opening = "store"
        self._startup_error: ServerUnavailableError | None = None
        self._pool: WorkerPool | None = None
        self.keeper: LeaseKeeper | None = None
        """The lease keeper while running (health checks read its last tick)."""
        self.stop_reason: str | None = None
        """Why the relay was asked to stop (the first reason given to :meth:`stop`)."""

    @property
    def shards(self) -> frozenset[int]:
        """The shards this instance works on now (including any being handed over)."""
        return frozenset(self._pool.workers) if self._pool is not None else frozenset()

    def stop(self, reason: str = "stop requested") -> None:
        """Ask :meth:`run` to drain and return. Safe to call at any time, more than once."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop_requested = True
        if self._stop_event is not None:
            self._stop_event.set()

    def abort(self) -> None:
        """Make :meth:`run` return at once: no draining, no lease release (other instances
        take the shards after ``lease_ttl``), closing given up. Unacknowledged messages are
        published again later."""
        self._aborted = True
        self.stop()
        for scope in (self._run_scope, *self._cleanups):
            if scope is not None:
                scope.cancel()

    async def run(self) -> None:
        """Open store and publisher (retrying while they cannot be reached, for at most
        ``startup_timeout``), relay until stopped, drain, release leases, close."""
        if self._started:
            raise RuntimeError("a ShardedRelay runs once; create a new one")
        self._started = True
        self._stop_event = anyio.Event()
        if self._stop_requested:
            self._stop_event.set()
        with anyio.CancelScope() as self._run_scope:
            if self._aborted:
                self._run_scope.cancel()
            try:
                if await self._start(self._stop_event):
                    await self._serve(self._stop_event)
            finally:
                async with anyio.create_task_group() as closing:
                    closing.start_soon(
                        self._cleanup, "closing the publisher", self._publisher.close
                    )
                    closing.start_soon(self._cleanup, "closing the store", self._store.close)

    async def _start(self, stop_event: anyio.Event) -> bool:
        """Open the store, then the publisher, each retried while its server cannot be reached;
        False if stopped first. Past ``startup_timeout``, the last error is raised."""
        timeout = self.settings.startup_timeout
        opened, failure = False, None
        with anyio.move_on_after(math.inf if timeout is None else timeout) as timer:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_when_set, stop_event, tg.cancel_scope)
                try:
                    await self._open("store", self._store.open, self._store.close)
                    await self._open("publisher", self._publisher.open, self._publisher.close)
                    opened = True
                except Exception as exc:  # raised below, not wrapped in an exception group
                    failure = exc
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if opened or not timer.cancelled_caught:
            return opened
        what, last = self._opening, self._startup_error
        error = PublisherUnavailableError if what == "publisher" else StoreUnavailableError
        if last is None:
            raise error(f"the {what} did not answer within startup_timeout={timeout:g}s")
        raise error(f"{last} (still failing after startup_timeout={timeout:g}s)") from last

    async def _open(
        self, what: str, open_: Callable[[], Awaitable[None]], close: Callable[[], Awaitable[None]]
    ) -> None:
        """Open ``what``, again and again (capped backoff) while it raises a retriable
        :class:`ServerUnavailableError`: one warning per attempt that names the server."""
        self._opening = what
        for attempt in itertools.count(1):
            try:
                await open_()
            except ServerUnavailableError as exc:
                if not exc.retriable or isinstance(exc, ConfigurationError):
                    raise
                self._startup_error = exc
                # doubling from 0.5 s up to 10 s, jittered down by at most half so that
                # relays restarted together spread out
                delay = backoff_delay(
                    attempt - 1, STARTUP_BACKOFF_INITIAL, STARTUP_BACKOFF_MAX, self._rng, jitter=0.5
                )
                log.warning(
                    "%s unreachable (attempt %d; next in %.1fs): %s", what, attempt, delay, exc
                )
                await self._cleanup(f"closing the {what}", close)  # what the attempt left open
                await anyio.sleep(delay)
            else:
                if attempt > 1:
                    log.info("%s reachable after %d attempts", what, attempt)
                self._startup_error = None
                return

    async def _serve(self, stop_event: anyio.Event) -> None:
        settings = self.settings
        wakeup = Wakeup()
        merger = PublishMerger(self._publisher, settings.batch_size)
        context = RelayContext(
            store=self._store,
            publisher=self._publisher,
            settings=settings,
            metrics=self.metrics,
            wakeup=wakeup,
            rng=self._rng,
            merger=merger,
        )
        pool = self._pool = WorkerPool(context)
        keeper = LeaseKeeper(self._store, self.owner, settings.lease_ttl, pool, self._rng)
        self.keeper = keeper
        log.info(
            "relay %s starting on %d shards (fixed by the store's migration)",
            self.owner,
            self._store.shard_count,
        )
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(wakeup.run, self._store, settings.poll_interval)
                tail = getattr(self._store, "tail", None)  # a store that tails a log
                if tail is not None:
                    reader = tail(self._publisher, settings, self.metrics, self.owner)
                    services.start_soon(reader.run)
                merger.bind(services)
                async with anyio.create_task_group() as workers:
                    pool.bind(workers)
                    services.start_soon(keeper.run)
                    if settings.exit_when_idle:
                        services.start_soon(self._stop_when_idle, keeper, pool)
                    await stop_event.wait()
                    log.info("relay %s draining %d shards", self.owner, len(pool.workers))
                    pool.close()
                    with anyio.move_on_after(settings.drain_timeout) as drain:
                        await pool.wait_empty()
                    if drain.cancelled_caught:
                        log.warning("drain timed out; abandoning in-flight batches")
                    pool.abort()
                services.cancel_scope.cancel()
        finally:
            await self._leave(pool)

    async def _leave(self, pool: WorkerPool) -> None:
        leases, pool.leftover = pool.leftover, []

        async def leave() -> None:
            if leases:
                try:
                    await self._store.release(leases)
                except Exception as exc:
                    log.warning("releasing leases failed (%s)", brief(exc))
                else:
                    log.info("leases released: shards %s", sorted(lease.shard for lease in leases))
            await self._store.leave(self.owner)

        await self._cleanup("leaving", leave)
        log.info("relay %s stopped", self.owner)

    async def _cleanup(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a shutdown step even while cancelled, for at most :data:`CLOSE_STEP` seconds
        whatever the step does (see :mod:`outboxkit.closing`); log (not raise) its failure.
        Skipped once :meth:`abort` was called, and given up when it is."""
        if self._aborted:
            return
        timeout = CLOSE_STEP
        done = False
        with anyio.CancelScope(shield=True) as scope:
            self._cleanups.add(scope)
            try:
                done = await close_within(step, timeout)
            except Exception as exc:
                log.warning("%s failed (%s)", what, brief(exc))
                return
            finally:
                self._cleanups.discard(scope)
        if not done and not scope.cancelled_caught:
            log.warning("%s gave up after %.0fs: the server does not answer", what, timeout)

    async def _stop_when_idle(self, keeper: LeaseKeeper, pool: WorkerPool) -> None:
        """Stop once a full round found every owned shard empty and nothing is pending but
        messages parked behind dead letters (with ``on_dead_letter="block"``); for a store
        that tails a log, also once every message committed before the check is done."""
        log_drained = getattr(self._store, "log_drained", None)
        while True:
            await anyio.sleep(self.settings.poll_interval)
            if keeper.rounds == 0:
                continue
            if any(w.busy or not w.idle for w in pool.workers.values()):
                continue
            try:
                status = await self._store.status()
            except Exception as exc:
                log.warning("status check failed (%s)", brief(exc))
                continue
            parked = status.parked if self.settings.on_dead_letter == "block" else 0
            if status.pending - parked > 0:
                continue
            if log_drained is not None:
                try:
                    if not await log_drained(LOG_DRAIN_WAIT):
                        continue
                except Exception as exc:
                    log.warning("log check failed (%s)", brief(exc))
                    continue
            if parked:
                log.info(
                    "nothing to publish: stopping (exit_when_idle); %d messages of %d "
                    "aggregates wait behind dead letters (on_dead_letter=block)",
                    parked,
                    status.blocked_aggregates,
                )
            else:
                log.info("nothing pending: stopping (exit_when_idle)")
            self.stop("nothing pending (exit_when_idle)")
            return


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
