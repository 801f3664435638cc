"""Where the relay's time goes: a pyinstrument profile split by layer.

Each sample's time is given to the innermost frame that belongs to a known layer (database
driver, store plugin, broker client, publisher plugin, serialization, relay core, event loop),
so e.g. asyncpg code called from the store counts as database driver time. Time the event loop
spends blocked in ``select``/``epoll`` is waiting for the servers' answers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame

__all__ = ["LAYERS", "layer_shares", "profiled"]

LAYERS: tuple[tuple[str, str], ...] = (
    ("selectors.py", "waiting for server answers (idle in select/epoll)"),
    ("/asyncpg/", "database driver (asyncpg)"),
    ("/pymongo/", "database driver (pymongo)"),
    ("/bson/", "database driver (pymongo)"),
    ("/outboxkit_postgres/", "store plugin (outboxkit_postgres)"),
    ("/outboxkit_mongodb/", "store plugin (outboxkit_mongodb)"),
    # before the clients: the plugins live under plugins/kafka/ and plugins/nats/
    ("/outboxkit_kafka/", "publisher plugin (outboxkit_kafka)"),
    ("/outboxkit_nats/", "publisher plugin (outboxkit_nats)"),
    ("/aiokafka/", "broker client (aiokafka)"),
    ("/kafka/", "broker client (aiokafka)"),
    ("/nats/", "broker client (nats-py)"),
    ("/msgspec/", "serialization (msgspec)"),
    ("/outboxkit/message.py", "message encoding (outboxkit.message)"),
    ("/outboxkit/", "relay core (outboxkit)"),
    ("/anyio/", "event loop and tasks (asyncio, anyio)"),
    ("/asyncio/", "event loop and tasks (asyncio, anyio)"),
)
OTHER = "other (benchmark harness, stdlib)"


def _layer(frame: Frame) -> str | None:
    path = (frame.file_path or "").replace("\\", "/")
    for marker, layer in LAYERS:
        if marker in path:
            return layer
    return None


def layer_shares(root: Frame) -> dict[str, float]:
    """Percent of the profiled time per layer (see the module docs)."""
    totals: dict[str, float] = defaultdict(float)
    stack: list[tuple[Frame, str]] = [(root, OTHER)]
    while stack:
        frame, inherited = stack.pop()
        layer = _layer(frame) or inherited
        totals[layer] += frame.total_self_time
        stack.extend((child, layer) for child in frame.children)
    whole = sum(totals.values()) or 1.0
    return {k: round(100 * v / whole, 1) for k, v in sorted(totals.items(), key=lambda i: -i[1])}


@asynccontextmanager
async def profiled(target: Path, name: str, shares: dict[str, float]) -> AsyncIterator[None]:
    """Profile the block (whole thread, all tasks); write ``<name>.html`` and ``<name>.txt``
    to ``target`` and fill ``shares`` with :func:`layer_shares`."""
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        _save(profiler, target, name, shares)


def _save(profiler: Profiler, target: Path, name: str, shares: dict[str, float]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{name}.html").write_text(profiler.output_html())
    (target / f"{name}.txt").write_text(profiler.output_text(unicode=True, show_all=False))
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is not None:
        shares.update(layer_shares(root))
