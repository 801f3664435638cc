"""Brokers as benchmark targets: a fresh destination, the outboxkit publisher for it, the raw
client baseline, and an independent consumer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from outboxkit_kafka import KafkaPublisher, KafkaSettings
from outboxkit_nats import NatsPublisher, NatsSettings

from benchmarks.support.baselines import raw_kafka, raw_nats
from benchmarks.support.consumers import Consume, consume_kafka, consume_nats
from benchmarks.support.destinations import kafka_topic, nats_stream
from benchmarks.support.progress import Progress
from outboxkit.message import Message
from outboxkit.protocols import Publisher

__all__ = ["BrokerTarget", "KafkaTarget", "NatsTarget", "unique"]

NATS_CONCURRENCY = NatsSettings().max_in_flight


def unique(label: str) -> str:
    """``label`` made unique for this run (letters, digits and ``_`` only)."""
    return f"bench_{label}_{secrets.token_hex(3)}"


class BrokerTarget(Protocol):
    name: str

    def destination(self, label: str) -> AbstractAsyncContextManager[str]:
        """A new, empty destination; yields the ``Message.topic`` that routes to it."""
        ...

    def publisher(self, topic: str) -> Publisher: ...

    async def baseline(self, topic: str, messages: Sequence[Message], tracker: Progress) -> None:
        """Send ``messages`` with the raw client; return once all are acknowledged."""

    async def consume(self, topic: str, consume: Consume) -> None:
        """Read ``topic`` from the start until ``consume`` is finished."""


class KafkaTarget:
    name = "kafka"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    @asynccontextmanager
    async def destination(self, label: str) -> AsyncIterator[str]:
        async with kafka_topic(self.bootstrap, unique(label)) as topic:
            yield topic

    def publisher(self, topic: str) -> Publisher:
        return KafkaPublisher(KafkaSettings(bootstrap_servers=self.bootstrap))

    async def baseline(self, topic: str, messages: Sequence[Message], tracker: Progress) -> None:
        defaults = KafkaSettings()
        await raw_kafka(
            self.bootstrap,
            topic,
            messages,
            tracker,
            linger_ms=defaults.linger_ms,
            max_batch_size=defaults.max_batch_size,
        )

    async def consume(self, topic: str, consume: Consume) -> None:
        await consume_kafka(self.bootstrap, topic, consume)


class NatsTarget:
    name = "nats"

    def __init__(self, url: str) -> None:
        self.url = url

    @asynccontextmanager
    async def destination(self, label: str) -> AsyncIterator[str]:
        async with nats_stream(self.url, unique(label)) as stream:
            yield f"{stream}.events"

    def publisher(self, topic: str) -> Publisher:
        stream = topic.partition(".")[0]
        return NatsPublisher(NatsSettings(servers=[self.url], stream=stream))

    async def baseline(self, topic: str, messages: Sequence[Message], tracker: Progress) -> None:
        await raw_nats(self.url, topic, messages, tracker, NATS_CONCURRENCY)

    async def consume(self, topic: str, consume: Consume) -> None:
        await consume_nats(self.url, topic.partition(".")[0], consume)
