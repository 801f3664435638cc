"""Shared pytest configuration for the outboxkit test suite.

* async tests run on asyncio through anyio's pytest plugin (``@pytest.mark.anyio``);
* real-server fixtures ``postgres_url``, ``kafka_bootstrap``, ``nats_url`` and
  ``mongodb_url`` return the server's address once it answers (``tests/support/servers.py``).
  A server that is not configured or does not answer **skips** the test on a developer
  machine and **fails** it in CI (environment variable ``CI`` set): in CI a missing server is
  a failure, never a skip;
* ``local_nats`` starts private ``nats-server`` processes;
* every test is marked with the servers it uses (``postgres``, ``kafka``, ``nats``,
  ``mongodb``), from the fixtures above that it needs, directly or through other fixtures:
  ``scripts/test -m "not mongodb"`` runs the tests that need no MongoDB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import servers
from tests.support.missing import missing

if TYPE_CHECKING:  # imported by the fixture: the unit tests need no NATS client
    from tests.support.nats import LocalNatsServer

MARKER_OF_FIXTURE = {
    "postgres_url": "postgres",
    "kafka_bootstrap": "kafka",
    "nats_url": "nats",
    "local_nats": "nats",
    "mongodb_url": "mongodb",
    "prometheus_url": "prometheus",
}
"""The marker of each fixture that needs a server (``local_nats``: the nats-server binary)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker in sorted({m for f, m in MARKER_OF_FIXTURE.items() if f in used}):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _server(name: str) -> str:
    try:
        return servers.require(name)
    except servers.Unavailable as unavailable:
        missing(str(unavailable))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """``postgresql://...`` URL of a PostgreSQL server with wal_level=logical."""
    return _server("postgres")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` bootstrap servers of a Kafka cluster (topics are not auto-created)."""
    return _server("kafka")


@pytest.fixture(scope="session")
def nats_url() -> str:
    """``nats://host:port`` of a NATS server with JetStream enabled."""
    return _server("nats")


@pytest.fixture(scope="session")
def mongodb_url() -> str:
    """``mongodb://...`` URL of a MongoDB-wire server (FerretDB locally, mongod via Docker)."""
    return _server("mongodb")


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    """``http://host:port`` of a Prometheus scraping the file_sd targets tests write."""
    return _server("prometheus")


@pytest.fixture
def local_nats(tmp_path: Path) -> Iterator[Callable[..., LocalNatsServer]]:
    """``local_nats(authorization=None, jetstream=True)``: a started private server, killed
    after the test."""
    from tests.support.nats import LocalNatsServer

    started: list[LocalNatsServer] = []

    def start(authorization: str | None = None, jetstream: bool = True) -> LocalNatsServer:
        server = LocalNatsServer(tmp_path / f"nats{len(started)}", authorization, jetstream)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill()
