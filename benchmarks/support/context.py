"""What every scenario gets: size, servers, the results to add to, and factories."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.support.progress import Progress
from benchmarks.support.run_results import RunResults
from benchmarks.support.server_urls import Servers
from benchmarks.support.sizes import Size
from benchmarks.support.targets import BrokerTarget, KafkaTarget, NatsTarget, unique
from benchmarks.support.throughput_floor import Sender
from outboxkit.message import Message
from outboxkit.protocols import Store

__all__ = ["Backlog", "Context"]


class Backlog(Protocol):
    """A prepared, empty store: fill it, then relay from fresh :meth:`store` instances."""

    def store(self) -> Store: ...

    async def fill(self, messages: Sequence[Message], tracker: Progress) -> None: ...

    async def floor(self, sender: Sender, batch: int, count: int) -> float:
        """Seconds the hand-written at-most-once relay takes to move the ``count`` messages
        (``benchmarks.support.throughput_floor``)."""
        ...


@dataclass
class Context:
    size: Size
    servers: Servers
    results: RunResults
    out: Path
    """This run's results directory (profiles go there)."""
    profile: bool = False
    pipelines: tuple[str, ...] = ()
    """Throughput pipelines to run (``"pg-kafka"``, ...); empty: all."""

    def broker(self, name: str) -> BrokerTarget:
        if name == "kafka":
            return KafkaTarget(self.servers.kafka)
        return NatsTarget(self.servers.nats)

    def backlog(
        self, store: str, label: str, shard_count: int | None = None
    ) -> AbstractAsyncContextManager[Backlog]:
        """A fresh schema (pg) or database (mongodb), dropped on exit."""
        shards = shard_count or self.size.shard_count
        if store == "pg":
            from benchmarks.support.pg_backlog import pg_backlog

            return pg_backlog(self.servers.postgres, unique(label), shards)
        from benchmarks.support.mongo_backlog import mongo_backlog

        return mongo_backlog(self.servers.mongodb, unique(label), shards)
