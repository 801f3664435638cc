"""Keeping shard leases: heartbeat, renewal, fair-share rebalancing, takeover."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

import anyio

from outboxkit.protocols import LeaseInfo, Store
from outboxkit.relay.log import brief, log, shard_ranges
from outboxkit.relay.pool import WorkerPool
from outboxkit.sharding import fair_share

__all__ = ["LeaseKeeper", "claimable_shards"]


def claimable_shards(
    leases: Sequence[LeaseInfo], owner: str, exclude: Collection[int], rng: random.Random
) -> list[int]:
    """Shards ``owner`` may try to acquire, shuffled so simultaneous joiners rarely collide.

    A shard is claimable if it is free (never leased or released), expired by the database
    clock, or still recorded as ``owner``'s (e.g. acquired by a request that timed out).
    """
    free = [
        info.shard
        for info in leases
        if info.shard not in exclude
        and (
            info.owner is None
            or info.owner == owner
            or (info.expires_in is not None and info.expires_in <= 0)
        )
    ]
    rng.shuffle(free)
    return free


class LeaseKeeper:
    """Runs on its own task so slow publishing never starves the heartbeat.

    Every ``lease_ttl / 3`` seconds: heartbeat (which yields the live instances), renew the
    held leases (cancelling the workers of those not renewed), then move towards this
    instance's fair share: shed extra shards gracefully, or acquire free and expired ones.
    Store errors are logged and retried next tick; a lease whose deadline passes without a
    renewal has its worker cancelled.
    """

    def __init__(
        self, store: Store, owner: str, ttl: float, pool: WorkerPool, rng: random.Random
    ) -> None:
        self._store = store
        self._owner = owner
        self._ttl = ttl
        self._pool = pool
        self._rng = rng
        self.rounds = 0
        """Ticks completed without error."""
        self.live: list[str] = []
        """Live instances seen at the last heartbeat."""
        self.ticked_at: float | None = None
        """Event-loop time the last tick ended (with or without error): liveness reads it."""

    @property
    def interval(self) -> float:
        """Seconds between ticks."""
        return self._ttl / 3

    async def run(self) -> None:
        """Tick forever (until cancelled)."""
        while True:
            started = anyio.current_time()
            with anyio.move_on_after(self._ttl / 2) as scope:
                try:
                    await self.tick()
                except Exception as exc:
                    log.warning("lease upkeep failed (%s); retrying", brief(exc))
            if scope.cancelled_caught:
                log.warning("lease upkeep took over %.1fs; retrying", self._ttl / 2)
            self._pool.expire(anyio.current_time())
            self.ticked_at = anyio.current_time()
            await anyio.sleep(max(0.0, started + self.interval - anyio.current_time()))

    async def tick(self) -> None:
        """One round of heartbeat, renewal and rebalancing."""
        started = anyio.current_time()
        self.live = await self._store.heartbeat(self._owner, self._ttl)
        await self._renew(started)
        if not self._pool.closing:
            await self._rebalance()
        self.rounds += 1

    async def _renew(self, started: float) -> None:
        held = list(self._pool.workers.values())
        if not held:
            return
        renewed = {
            lease.shard: lease
            for lease in await self._store.renew([w.lease for w in held], self._ttl)
        }
        for worker in held:
            if self._pool.workers.get(worker.shard) is not worker:
                continue  # ended meanwhile
            lease = renewed.get(worker.shard)
            if lease is None:
                worker.cancel(lost=True)
            else:
                worker.lease, worker.deadline = lease, started + self._ttl

    async def _rebalance(self) -> None:
        target = fair_share(self._store.shard_count, self.live, self._owner)
        active = self._pool.active()
        if len(active) > target:
            # Prefer idle workers: their shards change hands without waiting for a batch.
            extra = sorted(active, key=lambda w: (w.busy, -w.shard))[: len(active) - target]
            for worker in extra:
                worker.stop(shed=True)
            shed = sorted(w.shard for w in extra)
            log.info(
                "rebalance: shedding %d shards %s (fair share %d of %d, %d live instances)",
                len(shed),
                shard_ranges(shed),
                target,
                self._store.shard_count,
                len(self.live),
                extra={"instance": self._owner, "shards": shed, "fair_share": target},
            )
            return
        if len(active) == target:
            return
        candidates = claimable_shards(
            await self._store.leases(), self._owner, self._pool.workers, self._rng
        )
        acquired: list[int] = []
        try:
            for shard in candidates:
                if len(self._pool.active()) >= target or self._pool.closing:
                    break
                started = anyio.current_time()
                lease = await self._store.acquire(self._owner, shard, self._ttl)
                if lease is not None and not self._pool.start(lease, started + self._ttl):
                    await self._store.release([lease])
                elif lease is not None:
                    acquired.append(shard)
        finally:
            if acquired:
                acquired.sort()
                log.info(
                    "rebalance: acquired %d shards %s (now %d, fair share %d of %d, "
                    "%d live instances)",
                    len(acquired),
                    shard_ranges(acquired),
                    len(self._pool.active()),
                    target,
                    self._store.shard_count,
                    len(self.live),
                    extra={"instance": self._owner, "shards": acquired, "fair_share": target},
                )
