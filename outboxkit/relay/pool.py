"""The set of running shard workers: start, shed, lose, drain."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
from anyio.abc import TaskGroup

from outboxkit.protocols import Lease
from outboxkit.relay.log import brief, log
from outboxkit.relay.worker import RelayContext, ShardWorker

__all__ = ["WorkerPool"]

RELEASE_TIMEOUT = 5.0


class WorkerPool:
    """One :class:`ShardWorker` per held lease, run in a task group given to :meth:`bind`.

    A shed worker's lease is released as soon as its in-flight batch is settled; a lost one is
    dropped; the others' leases are collected in :attr:`leftover` for one release at shutdown.
    """

    def __init__(self, context: RelayContext) -> None:
        self._context = context
        self._store = context.store
        self._metrics = context.metrics
        self._workers: dict[int, ShardWorker] = {}
        self._task_group: TaskGroup | None = None
        self._empty = anyio.Event()
        self.closing = False
        self.leftover: list[Lease] = []

    @property
    def workers(self) -> Mapping[int, ShardWorker]:
        """Every running worker by shard, including those stopping."""
        return self._workers

    def active(self) -> list[ShardWorker]:
        """Workers not asked to stop: the shards this instance counts as its own."""
        return [w for w in self._workers.values() if not w.stopping]

    def bind(self, task_group: TaskGroup) -> None:
        """Run workers in ``task_group``."""
        self._task_group = task_group

    def start(self, lease: Lease, deadline: float) -> bool:
        """Start relaying ``lease.shard``; False (nothing started) if the pool is closing."""
        if self.closing or self._task_group is None or lease.shard in self._workers:
            return False
        worker = ShardWorker(lease, deadline, self._context)
        self._workers[lease.shard] = worker
        self._count()
        self._task_group.start_soon(self._run, worker, name=f"outboxkit-shard-{lease.shard}")
        log.debug("lease acquired: shard %d (token %d)", lease.shard, lease.token)
        return True

    def expire(self, now: float) -> None:
        """Cancel the workers whose lease was not renewed before its deadline."""
        for worker in list(self._workers.values()):
            if worker.deadline <= now:
                worker.cancel(lost=True)

    def close(self) -> None:
        """Stop every worker gracefully and accept no new ones."""
        self.closing = True
        for worker in list(self._workers.values()):
            worker.stop()
        if not self._workers:
            self._empty.set()

    def abort(self) -> None:
        """Cancel the workers still running (their batches will be claimed again)."""
        for worker in list(self._workers.values()):
            worker.cancel(lost=False)

    async def wait_empty(self) -> None:
        """Return once :meth:`close` was called and every worker has ended."""
        await self._empty.wait()

    async def _run(self, worker: ShardWorker) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("shard %d: worker crashed", worker.shard)
        finally:
            del self._workers[worker.shard]
            self._count()
            await self._settle_lease(worker)
            if self.closing and not self._workers:
                self._empty.set()

    async def _settle_lease(self, worker: ShardWorker) -> None:
        if worker.lost:
            self._metrics.lease_lost += 1
            log.info("lease lost: shard %d (token %d)", worker.shard, worker.lease.token)
        elif worker.shed and not self.closing:
            with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_TIMEOUT):
                try:
                    await self._store.release([worker.lease])
                except Exception as exc:
                    log.warning("shard %d: release failed (%s)", worker.shard, brief(exc))
                    return
                log.debug("lease released: shard %d", worker.shard)
        else:
            self.leftover.append(worker.lease)

    def _count(self) -> None:
        self._metrics.owned_shards = len(self._workers)
