"""What the tests (and the benchmarks) need around the servers, one module per concern:

* ``servers``: where the servers are (``OUTBOXKIT_TEST_*``) and whether they answer;
* ``postgres``: connections and throwaway schemas;
* ``kafka``: throwaway topics, reading a topic back, the broker's process;
* ``nats``: throwaway JetStream streams, reading a stream back, private ``nats-server``\\ s;
* ``mongodb``: throwaway databases and opened stores;
* ``sqlite``: writes to the embedded SQLite outbox.

Import them as ``tests.support.<module>``: the repository root is on ``sys.path`` (pytest's
``pythonpath`` option; ``python -m`` from the root).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO"]

REPO = Path(__file__).resolve().parents[2]
"""The root of the repository (the checkout these tests belong to)."""
