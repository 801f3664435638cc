"""What the tests (and the benchmarks) need around the servers, one module per concern:

* ``servers``: where the servers are (``OUTBOXKIT_TEST_*``) and whether they answer;
* ``postgres``: connections and throwaway schemas;
* ``kafka``: throwaway topics, reading a topic back, the broker's process;
* ``nats``: throwaway JetStream streams, reading a stream back, private ``nats-server``\\ s;
* ``mongodb``: throwaway databases and opened stores;
* ``sqlite``: writes to the embedded SQLite outbox;
* ``processes``: child processes (relays, consumers) with their own environment and log;
* ``proxy``: TCP proxies that stall, refuse or forward, for outage tests.

Here: :data:`REPO`, and :func:`eventually` to wait for a condition.

Import them as ``tests.support.<module>``: the repository root is on ``sys.path`` (pytest's
``pythonpath`` option; ``python -m`` from the root).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

__all__ = ["REPO", "eventually"]

REPO = Path(__file__).resolve().parents[2]
"""The root of the repository (the checkout these tests belong to)."""


async def eventually(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> Any:
    """Poll ``check`` (plain or async) until it returns something true; return that.
    TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g}s: {what}")
        await anyio.sleep(interval)
