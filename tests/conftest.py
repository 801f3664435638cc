"""Shared pytest configuration for the outboxkit test suite.

* async tests run on asyncio through anyio's pytest plugin (``@pytest.mark.anyio``);
* real-server fixtures (``postgres_url``, ``kafka_bootstrap``, ``nats_url``, ``mongodb_url``)
  come from ``tests/servers.py``: see its docstring for how they find the servers and why a
  missing server fails in CI but skips elsewhere.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load_servers() -> ModuleType:
    # Loaded by path so it works whatever pytest's import mode and whether tests/ is a package.
    name = "outboxkit_test_servers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("servers.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_servers = _load_servers()

postgres_url = _servers.postgres_url
kafka_bootstrap = _servers.kafka_bootstrap
nats_url = _servers.nats_url
mongodb_url = _servers.mongodb_url
prometheus_url = _servers.prometheus_url


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
