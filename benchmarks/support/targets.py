"""Brokers as benchmark targets: a fresh destination, the outboxkit publisher for it, the raw
client baseline, and an independent consumer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from outboxkit_kafka import KafkaPublisher, KafkaSettings
from outboxkit_nats import NatsPublisher, NatsSettings

from benchmarks.support.baselines import KAFKA_VARIANTS, NATS_VARIANTS, raw_kafka, raw_nats
from benchmarks.support.consumers import Consume, consume_kafka, consume_nats
from benchmarks.support.destinations import kafka_topic, nats_stream
from benchmarks.support.throughput_floor import KafkaSender, NatsSender, Sender
from outboxkit.message import Message
from outboxkit.protocols import Publisher

__all__ = ["BrokerTarget", "KafkaTarget", "NatsTarget", "unique"]


def unique(label: str) -> str:
    """``label`` made unique for this run (letters, digits and ``_`` only)."""
    return f"bench_{label}_{secrets.token_hex(3)}"


class BrokerTarget(Protocol):
    name: str

    def destination(self, label: str) -> AbstractAsyncContextManager[str]:
        """A new, empty destination; yields the ``Message.topic`` that routes to it."""
        ...

    def publisher(self, topic: str) -> Publisher: ...

    def baselines(self) -> Sequence[str]:
        """The ways of using the raw client tried in each run (the fastest is the baseline)."""
        ...

    async def baseline(self, topic: str, messages: Sequence[Message], variant: str) -> float:
        """Send ``messages`` with the raw client as ``variant`` says; return the seconds
        from the first call to the last acknowledgement (see ``baselines``)."""
        ...

    def floor_sender(self, topic: str) -> Sender:
        """The broker side of the throughput floor (``throughput_floor``)."""
        ...

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

    def baselines(self) -> Sequence[str]:
        return [variant.name for variant in KAFKA_VARIANTS]

    async def baseline(self, topic: str, messages: Sequence[Message], variant: str) -> float:
        chosen = next(v for v in KAFKA_VARIANTS if v.name == variant)
        return await raw_kafka(self.bootstrap, topic, messages, chosen)

    def floor_sender(self, topic: str) -> Sender:
        return KafkaSender(self.bootstrap, topic)

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

    def baselines(self) -> Sequence[str]:
        return [variant.name for variant in NATS_VARIANTS]

    async def baseline(self, topic: str, messages: Sequence[Message], variant: str) -> float:
        chosen = next(v for v in NATS_VARIANTS if v.name == variant)
        return await raw_nats(self.url, topic, messages, chosen)

    def floor_sender(self, topic: str) -> Sender:
        return NatsSender(self.url, topic)

    async def consume(self, topic: str, consume: Consume) -> None:
        await consume_nats(self.url, topic.partition(".")[0], consume)
