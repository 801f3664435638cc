"""The NATS side of the end-to-end tests: the NATS tests' ``nats_support`` (servers, streams)
and a JetStream stream read back as deliveries."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from checks import Delivery
from nats.js.client import JetStreamContext
from relays import REPO

from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID

__all__ = ["nats_support", "read_deliveries"]


def _import_nats_support() -> ModuleType:
    # tests/nats/nats_support.py, imported from its folder (tests/ is not a package) under its
    # own name: the same module object as the NATS tests' ``import nats_support``.
    folder = str(REPO / "tests" / "nats")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("nats_support")
    finally:
        sys.path.remove(folder)


nats_support = _import_nats_support()


async def read_deliveries(
    js: JetStreamContext, stream: str, subjects: str, timeout: float = 30.0
) -> list[Delivery]:
    """Every message of ``stream`` in stream order."""
    messages = await nats_support.read_stream(js, stream, subjects, timeout=timeout)
    found = []
    for m in messages:
        headers = m.headers or {}
        found.append(
            Delivery(
                aggregate_id=headers.get(HEADER_AGGREGATE_ID, ""),
                message_id=headers.get(HEADER_ID, ""),
                position=m.metadata.sequence.stream,
                msg_id_header=headers.get("Nats-Msg-Id", ""),
            )
        )
    return sorted(found, key=lambda d: d.position)
