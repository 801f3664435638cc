"""Fixture layer for tests that need real servers.

Server addresses come from ``OUTBOXKIT_TEST_*`` environment variables, which
``scripts/services env`` prints (``scripts/test`` sets them for you)::

    scripts/services up
    eval "$(scripts/services env)"

Session fixtures ``postgres_url``, ``kafka_bootstrap``, ``nats_url``, ``mongodb_url`` and
``prometheus_url``
return the address after checking, once per session, that the server really answers
(a protocol-level probe, not just an open port). When a variable is missing or its
server does not answer, the test is **skipped** on a developer machine and **fails** in
CI (environment variable ``CI`` set): in CI a missing server is a failure, never a skip.

Loaded by ``tests/conftest.py``; the fixtures are available to every test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

__all__ = [
    "SERVERS",
    "Server",
    "in_ci",
    "kafka_bootstrap",
    "mongodb_url",
    "nats_url",
    "postgres_url",
    "prometheus_url",
    "require_server",
    "server_url",
    "services_command",
]

HINT = 'run scripts/services up and eval "$(scripts/services env)"'


@dataclass(frozen=True)
class Server:
    kind: str  # the probe kind in scripts/_services/probes.py
    env_var: str
    description: str


SERVERS: dict[str, Server] = {
    "postgres": Server("postgres", "OUTBOXKIT_TEST_POSTGRES_URL", "PostgreSQL"),
    "kafka": Server("kafka", "OUTBOXKIT_TEST_KAFKA_BOOTSTRAP", "Kafka"),
    "nats": Server("nats", "OUTBOXKIT_TEST_NATS_URL", "NATS JetStream"),
    "mongodb": Server("mongodb", "OUTBOXKIT_TEST_MONGODB_URL", "MongoDB-wire server"),
    "prometheus": Server("prometheus", "OUTBOXKIT_TEST_PROMETHEUS_URL", "Prometheus"),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(message: str) -> None:
    """Fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _load_probes() -> ModuleType:
    name = "outboxkit_services_probes"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "scripts" / "_services" / "probes.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def server_url(name: str) -> str:
    """The configured address of a server, without checking it (fail in CI / skip if unset)."""
    server = SERVERS[name]
    value = os.environ.get(server.env_var, "").strip()
    if not value:
        _missing(f"{server.env_var} is not set: {HINT}")
    return value


_probed: dict[str, tuple[bool, str]] = {}


def require_server(name: str) -> str:
    """The configured address of a server that answers right now (probed once per session)."""
    url = server_url(name)
    server = SERVERS[name]
    key = f"{name}={url}"
    if key not in _probed:
        _probed[key] = _load_probes().probe_url(server.kind, url, timeout=5.0)
    ok, detail = _probed[key]
    if not ok:
        _missing(
            f"{server.description} at {server.env_var}={url} does not answer ({detail}): {HINT}"
        )
    return url


def services_command(*args: str, timeout: float = 300) -> str:
    """Run ``scripts/services ARGS`` and return its output, e.g. for outage tests::

        services_command("down", "kafka")   # stops only a Kafka this checkout started
        services_command("up", "kafka")     # back, and answering, when this returns

    Only meaningful when the servers are the local ones; raises CalledProcessError on failure.
    """
    script = Path(__file__).resolve().parents[1] / "scripts" / "services"
    done = subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """``postgresql://...`` URL of a PostgreSQL server with wal_level=logical."""
    return require_server("postgres")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` bootstrap servers of a Kafka cluster (topics are not auto-created)."""
    return require_server("kafka")


@pytest.fixture(scope="session")
def nats_url() -> str:
    """``nats://host:port`` of a NATS server with JetStream enabled."""
    return require_server("nats")


@pytest.fixture(scope="session")
def mongodb_url() -> str:
    """``mongodb://...`` URL of a MongoDB-wire server (FerretDB locally, mongod via Docker)."""
    return require_server("mongodb")


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    """``http://host:port`` of a Prometheus scraping the file_sd targets tests write."""
    return require_server("prometheus")
