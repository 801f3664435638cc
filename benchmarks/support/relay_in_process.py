"""Running a :class:`ShardedRelay` in-process until it has published a given count."""

from __future__ import annotations

import time
from functools import partial

import anyio

from benchmarks.support.progress import Progress, wait_until
from outboxkit.metrics import RelayMetrics
from outboxkit.observability import RelayObserver
from outboxkit.protocols import Publisher, Store
from outboxkit.relay import ShardedRelay
from outboxkit.relay.settings import RelaySettings

__all__ = ["OpenedAt", "relay_until"]


class OpenedAt:
    """Delegates to ``inner`` (``publish`` is the inner method itself: no extra call);
    ``at`` is the ``perf_counter`` time at which ``open()`` returned."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.publish = inner.publish
        self.at: float | None = None

    async def open(self) -> None:
        await self.inner.open()
        self.at = time.perf_counter()

    async def close(self) -> None:
        await self.inner.close()


async def relay_until(
    store: Store,
    publisher: Publisher,
    count: int,
    tracker: Progress,
    settings: RelaySettings,
    *,
    timeout: float = 600.0,
    observer: RelayObserver | None = None,
) -> tuple[float, RelayMetrics]:
    """Relay until ``count`` messages are acknowledged; return (seconds, metrics).

    The time runs from the moment the store and the publisher are open (the relay opens the
    store first) to the last acknowledgement: it includes taking the leases, not connecting,
    as the baselines and the floor start their clock with their clients connected. With an
    ``observer``, the relay runs measured by it, as ``outboxkit relay`` runs it.
    """
    if observer is not None:
        store, publisher = observer.wrap(store, publisher)
    opened = OpenedAt(publisher)
    relay = ShardedRelay(store, opened, settings)
    elapsed = 0.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run if observer is None else partial(observer.run, relay))

        def published() -> bool:
            tracker.done = relay.metrics.published
            return tracker.done >= count

        finished = await wait_until(published, timeout, step=0.005)
        elapsed = time.perf_counter() - (opened.at or time.perf_counter())
        relay.stop()
    if not finished:
        raise TimeoutError(
            f"the relay published {relay.metrics.published} of {count} messages in "
            f"{timeout:.0f} s; see its log above, or give the scenario more time"
        )
    return elapsed, relay.metrics
