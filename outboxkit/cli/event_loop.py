"""Which asyncio event loop the commands run on: uvloop where it is installed (a dependency
of outboxkit on Linux and macOS), the standard one otherwise or on request.

uvloop halves the event loop's share of the relay's CPU time; on the 2-core benchmark
machine it took the commit -> broker ack median at 1,000 msg/s from 33 to 15 ms
(docs/benchmarks.md, "Where latency spikes come from").
"""

from __future__ import annotations

import importlib.util
from typing import Any

from outboxkit.errors import ConfigurationError

__all__ = ["EVENT_LOOPS", "backend_options"]

EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def backend_options(choice: str) -> dict[str, Any]:
    """anyio's asyncio backend options for ``--event-loop choice``."""
    if choice not in EVENT_LOOPS:
        raise ConfigurationError(
            f"invalid value {choice!r} for OUTBOXKIT_EVENT_LOOP: use one of "
            f"{', '.join(EVENT_LOOPS)}"
        )
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ConfigurationError(
            "--event-loop uvloop: uvloop is not installed; pip install uvloop, or use "
            "--event-loop asyncio"
        )
    return {"use_uvloop": choice != "asyncio" and installed}
