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

import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable

import anyio

from outboxkit.metrics import RelayMetrics
from outboxkit.protocols import Publisher, Store
from outboxkit.relay.leases import LeaseKeeper
from outboxkit.relay.log import brief, log
from outboxkit.relay.pool import RELEASE_TIMEOUT, WorkerPool
from outboxkit.relay.settings import RelaySettings
from outboxkit.relay.wakeup import Wakeup
from outboxkit.relay.worker import RelayContext

__all__ = ["RelayMetrics", "ShardedRelay", "default_instance_id"]


def default_instance_id() -> str:
    """``"<hostname>-<pid>-<4 random hex digits>"``: unique across hosts and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class ShardedRelay:
    """Relays messages from ``store`` to ``publisher`` on the shards this instance leases.

    Run it with ``await relay.run()``; :meth:`stop` (e.g. from a SIGTERM handler) makes it stop
    claiming, finish and settle in-flight batches (at most ``drain_timeout`` seconds), release
    its leases, leave the instance table, close store and publisher, and return. With
    ``exit_when_idle`` it also stops by itself once nothing is left to publish (messages
    parked behind a dead letter, with ``on_dead_letter="block"``, are not). A relay runs once.
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

    async def run(self) -> None:
        """Open store and publisher, relay until stopped, drain, release leases, close."""
        if self._started:
            raise RuntimeError("a ShardedRelay runs once; create a new one")
        self._started = True
        self._stop_event = anyio.Event()
        if self._stop_requested:
            self._stop_event.set()
        await self._store.open()
        try:
            await self._publisher.open()
            try:
                await self._serve(self._stop_event)
            finally:
                await _cleanup("closing the publisher", self._publisher.close)
        finally:
            await _cleanup("closing the store", self._store.close)

    async def _serve(self, stop_event: anyio.Event) -> None:
        settings = self.settings
        wakeup = Wakeup()
        context = RelayContext(
            store=self._store,
            publisher=self._publisher,
            settings=settings,
            metrics=self.metrics,
            wakeup=wakeup,
            rng=self._rng,
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
        if leases:
            await _cleanup("releasing leases", lambda: self._store.release(leases))
            log.info("leases released: shards %s", sorted(lease.shard for lease in leases))
        await _cleanup("leaving", lambda: self._store.leave(self.owner))
        log.info("relay %s stopped", self.owner)

    async def _stop_when_idle(self, keeper: LeaseKeeper, pool: WorkerPool) -> None:
        """Stop once a full round found every owned shard empty and nothing is pending but
        messages parked behind dead letters (with ``on_dead_letter="block"``)."""
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
            if status.pending - parked <= 0:
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


async def _cleanup(what: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run a shutdown step even while cancelled, bounded in time; log (not raise) failures."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_TIMEOUT) as scope:
        try:
            await step()
        except Exception as exc:
            log.warning("%s failed (%s)", what, brief(exc))
    if scope.cancelled_caught:
        log.warning("%s timed out after %.0fs", what, RELEASE_TIMEOUT)
