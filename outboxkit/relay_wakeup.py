"""One task waits on the store for new messages and wakes every idle shard worker."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from outboxkit.protocols import Store
from outboxkit.relay_log import brief, log

__all__ = ["Wakeup"]


class Wakeup:
    """A re-armable broadcast: :attr:`event` is set, then replaced, at every wake-up.

    A worker reads :attr:`event` *before* it claims, so a wake-up that arrives during the claim
    is not missed.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()

    @property
    def event(self) -> anyio.Event:
        """The event the next wake-up sets."""
        return self._event

    def fire(self) -> None:
        """Wake everyone waiting on the current event and arm a new one."""
        event, self._event = self._event, anyio.Event()
        event.set()

    async def run(self, store: Store, poll_interval: float) -> None:
        """Forever: wait for the store's signal (or ``poll_interval``), then :meth:`fire`."""
        while True:
            try:
                await store.wait(poll_interval)
            except Exception as exc:
                log.warning("waiting for new messages failed (%s); polling instead", brief(exc))
                await anyio.sleep(poll_interval)
            self.fire()
            await anyio.lowlevel.checkpoint()
