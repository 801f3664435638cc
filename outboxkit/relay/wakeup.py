"""One task waits on the store for new messages and wakes the idle workers of those shards."""

from __future__ import annotations

from collections.abc import Collection

import anyio
import anyio.lowlevel

from outboxkit.protocols import Store
from outboxkit.relay.log import brief, log

__all__ = ["GROUP_WAIT", "Wakeup"]

GROUP_WAIT = 0.05
"""Seconds a named wake-up waits at most for the workers of the previous one to finish."""


class Wakeup:
    """Re-armable per-shard broadcasts: a shard's event is set, then replaced, at a wake-up.

    A worker reads its shard's :meth:`event` *before* it claims, so a wake-up that arrives
    during the claim is not missed. Stores that say which shards got messages wake only
    those workers; otherwise (and at every poll interval) all of them.

    Named wake-ups go in groups, one group in flight: the parked workers woken together
    claim, publish and ack together (the store and the publisher merge their calls of one
    event-loop turn), and the shards named meanwhile wait, in the store, until that group is
    done (at most :data:`GROUP_WAIT` s) to go together in the next. At a trickle (one message
    per shard per wake-up), a commit then waits for at most one group in flight instead of
    interleaving with as many separate shard cycles (and produce requests) as recent commits.
    """

    def __init__(self) -> None:
        self._events: dict[int, anyio.Event] = {}
        self._noticed: set[int] = set()
        self._parked: set[int] = set()
        self._group: set[int] = set()
        self._group_done = anyio.Event()
        self._group_done.set()

    def noticed(self, shard: int) -> bool:
        """True if the last wake-up of ``shard`` named it (a commit to it), False if it was
        a poll (every shard woken, e.g. because the store knows no better)."""
        return shard in self._noticed

    def event(self, shard: int) -> anyio.Event:
        """The event the next wake-up of ``shard`` sets."""
        event = self._events.get(shard)
        if event is None:
            event = self._events[shard] = anyio.Event()
        return event

    def park(self, shard: int) -> None:
        """``shard``'s worker waits for a wake-up: its group's cycle is over."""
        self._parked.add(shard)
        self.done(shard)

    def unpark(self, shard: int) -> None:
        """``shard``'s worker stopped waiting (woken, timed out or cancelled)."""
        self._parked.discard(shard)

    def done(self, shard: int) -> None:
        """``shard``'s worker finished the cycle its wake-up started (or stopped)."""
        self._group.discard(shard)
        if not self._group:
            self._group_done.set()

    def fire(self, shards: Collection[int] | None = None) -> None:
        """Wake the workers waiting on ``shards`` (all when None) and arm new events."""
        targets = list(self._events) if shards is None else shards
        if shards is not None:
            self._group = self._parked.intersection(shards)
            self._group_done = anyio.Event()
            if not self._group:
                self._group_done.set()
        for shard in targets:
            event = self._events.pop(shard, None)
            if event is not None:
                if shards is None:
                    self._noticed.discard(shard)
                else:
                    self._noticed.add(shard)
                event.set()

    async def run(self, store: Store, poll_interval: float) -> None:
        """Forever: wait for the previous group, then for the store's signal (or
        ``poll_interval``), then :meth:`fire`."""
        while True:
            with anyio.move_on_after(GROUP_WAIT):
                await self._group_done.wait()
            self._group.clear()  # the rest of a slow group no longer holds wake-ups back
            self._group_done.set()
            shards: Collection[int] | None = None
            try:
                shards = await store.wait(poll_interval)
            except Exception as exc:
                log.warning("waiting for new messages failed (%s); polling instead", brief(exc))
                await anyio.sleep(poll_interval)
            self.fire(shards)
            await anyio.lowlevel.checkpoint()
