"""The NATS publisher passes the publisher conformance suite against real JetStream."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.js.client import JetStreamContext
from outboxkit_nats import NatsPublisher, NatsSettings

from outboxkit.message import Message
from outboxkit.testing import Consume, PublisherConformance, ReceivedRecord, Refuse
from tests.support.nats import Stream, fetch


class TestNatsConformance(PublisherConformance):
    @pytest.fixture
    async def publisher(self, nats_url: str) -> AsyncIterator[NatsPublisher]:
        publisher = NatsPublisher(NatsSettings(servers=[nats_url]))
        await publisher.open()
        yield publisher
        await publisher.close()

    @pytest.fixture
    def destination(self, stream: Stream) -> str:
        return stream.subject("events")

    @pytest.fixture
    def consume(self, js: JetStreamContext, stream: Stream) -> Consume:
        async def consume(destination: str, count: int, timeout: float) -> list[ReceivedRecord]:
            msgs = await fetch(js, stream.name, destination, count, timeout)
            return [
                ReceivedRecord(key=None, headers=dict(m.headers or {}), payload=m.data)
                for m in msgs
            ]

        return consume

    @pytest.fixture
    def missing_destination(self) -> str:
        return f"obkt-missing.{uuid.uuid4().hex[:12]}"

    @pytest.fixture(params=["oversized", "subject of no stream"])
    def refuse(self, request: pytest.FixtureRequest, publisher: NatsPublisher) -> Refuse:
        """A message JetStream refuses for good: over the server's max_payload, or to a
        subject no stream captures."""
        missing = f"obkt-missing.{uuid.uuid4().hex[:12]}"
        assert publisher._client is not None
        limit = publisher._client.max_payload

        def refuse(message: Message) -> Message:
            if request.param == "oversized":
                return msgspec.structs.replace(message, payload=b"x" * (limit + 1))
            return msgspec.structs.replace(message, topic=missing)

        return refuse

    @pytest.fixture
    def unreachable_publisher(self) -> NatsPublisher:
        return NatsPublisher(NatsSettings(servers=["nats://127.0.0.1:1"], connect_timeout=2))
