"""One task waits on the store for new messages and wakes the idle workers of those shards."""

from __future__ import annotations

from collections.abc import Collection

import anyio
import anyio.lowlevel

from outboxkit.protocols import Store
from outboxkit.relay_log import brief, log

__all__ = ["Wakeup"]


class Wakeup:
    """Re-armable per-shard broadcasts: a shard's event is set, then replaced, at a wake-up.

    A worker reads its shard's :meth:`event` *before* it claims, so a wake-up that arrives
    during the claim is not missed. Stores that say which shards got messages wake only
    those workers; otherwise (and at every poll interval) all of them.
    """

    def __init__(self) -> None:
        self._events: dict[int, anyio.Event] = {}
        self._noticed: set[int] = set()

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

    def fire(self, shards: Collection[int] | None = None) -> None:
        """Wake the workers waiting on ``shards`` (all when None) and arm new events."""
        targets = list(self._events) if shards is None else shards
        for shard in targets:
            event = self._events.pop(shard, None)
            if event is not None:
                if shards is None:
                    self._noticed.discard(shard)
                else:
                    self._noticed.add(shard)
                event.set()

    async def run(self, store: Store, poll_interval: float) -> None:
        """Forever: wait for the store's signal (or ``poll_interval``), then :meth:`fire`."""
        while True:
            shards: Collection[int] | None = None
            try:
                shards = await store.wait(poll_interval)
            except Exception as exc:
                log.warning("waiting for new messages failed (%s); polling instead", brief(exc))
                await anyio.sleep(poll_interval)
            self.fire(shards)
            await anyio.lowlevel.checkpoint()
