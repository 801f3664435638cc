"""Fixtures of the NATS publisher tests: a fresh JetStream stream per test, a raw client to
inspect it, publisher factories and private nats-server instances."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats_support import LocalNatsServer, PublisherFactory, Stream, make_stream
from outboxkit_nats import NatsPublisher, NatsSettings

from outboxkit.testing import open_factory


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
    made = await make_stream(js)
    yield made
    await js.delete_stream(made.name)


def make_publisher(**settings: Any) -> NatsPublisher:
    return NatsPublisher(NatsSettings(**settings))


@pytest.fixture
async def open_publisher(nats_url: str) -> AsyncIterator[PublisherFactory]:
    """``await open_publisher(**settings)``: an open publisher, closed after the test."""
    async with open_factory(make_publisher, servers=[nats_url]) as factory:
        yield factory


@pytest.fixture
def local_nats(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``local_nats(authorization=None, jetstream=True)``: a started private server."""
    servers: list[Any] = []

    def start(authorization: str | None = None, jetstream: bool = True) -> Any:
        server = LocalNatsServer(tmp_path / f"nats{len(servers)}", authorization, jetstream)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()
