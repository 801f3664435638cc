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

__all__ = ["relay_until"]


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

    The time runs from ``run()`` (store and publisher opening, leases) to the last
    acknowledgement, like the baselines' time includes starting their client. With an
    ``observer``, the relay runs measured by it, as ``outboxkit relay`` runs it.
    """
    if observer is not None:
        store, publisher = observer.wrap(store, publisher)
    relay = ShardedRelay(store, publisher, settings)
    elapsed = 0.0
    async with anyio.create_task_group() as tg:
        started = time.perf_counter()
        tg.start_soon(relay.run if observer is None else partial(observer.run, relay))

        def published() -> bool:
            tracker.done = relay.metrics.published
            return tracker.done >= count

        finished = await wait_until(published, timeout, step=0.005)
        elapsed = time.perf_counter() - started
        relay.stop()
    if not finished:
        raise TimeoutError(
            f"the relay published {relay.metrics.published} of {count} messages in "
            f"{timeout:.0f} s; see its log above, or give the scenario more time"
        )
    return elapsed, relay.metrics
