"""Small helpers shared by the conformance suites and plugin tests."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar
from uuid import uuid4

from outboxkit.message import Message
from outboxkit.sharding import shard_of

__all__ = [
    "aggregates_in_shard",
    "ids_by_aggregate",
    "make_message",
    "open_factory",
    "order_by_aggregate",
    "unique_name",
]


def unique_name(prefix: str = "okt") -> str:
    """A short unique lower-case name (for owners, topics, tables, aggregate ids)."""
    return f"{prefix}_{uuid4().hex[:12]}"


def make_message(
    aggregate_id: str,
    n: int = 0,
    *,
    aggregate_type: str = "order",
    topic: str | None = None,
    headers: dict[str, str] | None = None,
) -> Message:
    """A JSON message ``{"n": n}`` of ``aggregate_id``; ``n`` makes messages distinguishable."""
    return Message.create(
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        event_type="order.changed",
        payload={"aggregate": aggregate_id, "n": n},
        topic=topic,
        headers=headers,
    )


def aggregates_in_shard(shard: int, shard_count: int, count: int, prefix: str = "") -> list[str]:
    """``count`` distinct aggregate ids that :func:`~outboxkit.sharding.shard_of` maps to
    ``shard``; ``prefix`` (default: a unique one) keeps them apart from other tests."""
    base = prefix or unique_name("agg")
    candidates: Iterator[str] = (f"{base}-{i}" for i in itertools.count())
    matching = (a for a in candidates if shard_of(a, shard_count) == shard)
    return list(itertools.islice(matching, count))


def order_by_aggregate(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Group ``(aggregate_id, message_id)`` pairs by aggregate, keeping their order."""
    grouped: defaultdict[str, list[str]] = defaultdict(list)
    for aggregate_id, message_id in pairs:
        grouped[aggregate_id].append(message_id)
    return dict(grouped)


def ids_by_aggregate(messages: Sequence[Message]) -> dict[str, list[str]]:
    """Message ids grouped by aggregate, in sequence order."""
    return order_by_aggregate((m.aggregate_id, str(m.id)) for m in messages)


class _Openable(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...


OpenableT = TypeVar("OpenableT", bound=_Openable)


@asynccontextmanager
async def open_factory(
    create: Callable[..., OpenableT], **defaults: Any
) -> AsyncIterator[Callable[..., Awaitable[OpenableT]]]:
    """``async with open_factory(create, **defaults) as factory``: ``await factory(**kw)``
    returns ``create(**defaults | kw)`` opened; every one made is closed on exit (a fixture
    of publishers or stores with per-test settings)."""
    made: list[OpenableT] = []

    async def factory(**settings: Any) -> OpenableT:
        instance = create(**(defaults | settings))
        await instance.open()
        made.append(instance)
        return instance

    try:
        yield factory
    finally:
        for instance in made:
            await instance.close()
