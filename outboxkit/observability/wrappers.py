"""A store and a publisher that time their calls and count what passes through them.

They wrap the real ones the relay is given (``ShardedRelay(ObservedStore(store, ...), ...)``)
and pass every other attribute through, so the relay itself knows nothing of metrics.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from outboxkit.message import Message
from outboxkit.observability.instruments import RelayInstruments
from outboxkit.observability.tracing import PublishTracer
from outboxkit.protocols import (
    DeadLetterPolicy,
    Delivered,
    Envelope,
    Lease,
    Outcome,
    Publisher,
    ReportsDeliveries,
    Store,
)

__all__ = ["ObservedPublisher", "ObservedStore"]


class ObservedStore:
    """``store`` with claim and ack durations measured (other calls pass straight through)."""

    def __init__(self, store: Store, instruments: RelayInstruments) -> None:
        self.inner = store
        self._instruments = instruments

    @property
    def shard_count(self) -> int:
        return self.inner.shard_count

    async def claim(
        self, lease: Lease, limit: int, *, on_dead_letter: DeadLetterPolicy = "block"
    ) -> list[Envelope]:
        started = time.perf_counter()
        try:
            return await self.inner.claim(lease, limit, on_dead_letter=on_dead_letter)
        finally:
            self._instruments.claims += 1
            self._instruments.claim_seconds.observe(time.perf_counter() - started)

    async def ack(self, lease: Lease, envelopes: Sequence[Envelope]) -> None:
        started = time.perf_counter()
        try:
            await self.inner.ack(lease, envelopes)
        finally:
            self._instruments.ack_seconds.observe(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ObservedPublisher:
    """``publisher`` with publish durations, batch sizes and per-message lag measured, and
    each message published under a span of its own when ``tracer`` is given."""

    def __init__(
        self,
        publisher: Publisher,
        instruments: RelayInstruments,
        tracer: PublishTracer | None = None,
    ) -> None:
        self.inner = publisher
        self._instruments = instruments
        self._tracer = tracer

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        return await self._observed(messages, self.inner.publish)

    async def publish_reporting(
        self, messages: Sequence[Message], delivered: Callable[[Sequence[int]], None]
    ) -> list[Outcome]:
        """The inner publisher's ``publish_reporting``, observed as ``publish`` is; a publisher
        without it is called with ``publish`` (its deliveries are then settled at the end)."""
        if isinstance(self.inner, ReportsDeliveries):
            reporting = self.inner

            async def call(batch: Sequence[Message]) -> Sequence[Outcome]:
                return await reporting.publish_reporting(batch, delivered)

            return await self._observed(messages, call)
        return await self._observed(messages, self.inner.publish)

    async def _observed(
        self,
        messages: Sequence[Message],
        call: Callable[[Sequence[Message]], Awaitable[Sequence[Outcome]]],
    ) -> list[Outcome]:
        instruments = self._instruments
        instruments.batch_size.observe(len(messages))
        tracer, spans = self._tracer, None
        if tracer is not None:
            messages, spans = tracer.start(messages)
        started = time.perf_counter()
        try:
            outcomes = list(await call(messages))
        except BaseException as exc:
            if tracer is not None and spans is not None:
                tracer.fail(spans, exc)
            raise
        finally:
            instruments.publish_seconds.observe(time.perf_counter() - started)
        now = time.time()
        lag = instruments.lag_seconds
        for message, outcome in zip(messages, outcomes, strict=False):
            if type(outcome) is Delivered:
                lag.observe(max(0.0, now - message.created_at.timestamp()))
        if tracer is not None and spans is not None:
            tracer.end(spans, outcomes)
        return outcomes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
