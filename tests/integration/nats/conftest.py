"""Fixtures of the NATS publisher tests: a fresh JetStream stream per test, a raw client to
inspect it, publisher factories (private nats-server instances: ``local_nats``, in
``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from outboxkit_nats import NatsPublisher, NatsSettings

from outboxkit.testing import open_factory
from tests.support.nats import PublisherFactory, Stream, scratch_stream


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A plain client of the shared server, to create and inspect streams."""
    client = await nats.connect(nats_url, connect_timeout=5)
    yield client
    await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
async def stream(js: JetStreamContext) -> AsyncIterator[Stream]:
    """A fresh stream on the shared server, deleted after the test."""
    async with scratch_stream(js) as made:
        yield made


def make_publisher(**settings: Any) -> NatsPublisher:
    return NatsPublisher(NatsSettings(**settings))


@pytest.fixture
async def open_publisher(nats_url: str) -> AsyncIterator[PublisherFactory]:
    """``await open_publisher(**settings)``: an open publisher, closed after the test."""
    async with open_factory(make_publisher, servers=[nats_url]) as factory:
        yield factory
