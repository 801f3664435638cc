"""Waiting for a condition, and the verdict on what reached a broker: what was lost,
duplicated, never committed, or out of each aggregate's commit order."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import anyio

__all__ = ["Delivery", "Verdict", "committed_ids", "eventually", "slot_tenures", "verdict"]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Poll ``check`` (plain or async) until it is true; the seconds waited. TimeoutError
    naming ``what`` after ``timeout`` s."""
    start = time.monotonic()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not within {timeout:g}s: {what}")
        await anyio.sleep(interval)


class Delivery(NamedTuple):
    """One message read back from the broker: which message, of which aggregate, where."""

    aggregate_id: str
    message_id: str
    position: int = 0
    """Kafka: the offset in its partition; JetStream: the stream sequence."""
    partition: int = 0
    """Kafka's partition (JetStream: 0, one stream)."""
    msg_id_header: str | None = None
    """JetStream's ``Nats-Msg-Id``, which must be the message id (Kafka: None)."""


def committed_ids(committed: Mapping[str, Iterable[str]]) -> set[str]:
    """Every message id of ``committed`` (message ids per aggregate)."""
    return {m for ids in committed.values() for m in ids}


@dataclass
class Verdict:
    """What reached the broker compared with what was committed."""

    delivered: int
    lost: list[str]
    duplicates: int
    unexpected: list[str]
    order_violations: list[str] = field(default_factory=list)
    bad_headers: int = 0

    @property
    def ok(self) -> bool:
        return (
            not (self.lost or self.duplicates or self.unexpected or self.order_violations)
            and not self.bad_headers
        )

    def summary(self) -> str:
        return (
            f"delivered={self.delivered} lost={len(self.lost)} duplicates={self.duplicates} "
            f"unexpected={len(self.unexpected)} order_violations={len(self.order_violations)} "
            f"bad_headers={self.bad_headers} "
            f"(first: {self.lost[:3]} {self.unexpected[:3]} {self.order_violations[:3]})"
        )


def verdict(deliveries: Sequence[Delivery], committed: Mapping[str, Sequence[str]]) -> Verdict:
    """Compare ``deliveries`` (in broker order, per partition) with ``committed``: message ids
    per aggregate in commit order. Order is checked on the first delivery of each message, and
    each aggregate must stay in one partition. A header is bad when the JetStream message id
    is not the message's, or the message comes with another aggregate than it was written with.
    """
    expected = committed_ids(committed)
    aggregate_of = {m: a for a, ids in committed.items() for m in ids}
    seen: set[str] = set()
    firsts: defaultdict[str, list[str]] = defaultdict(list)
    partitions: defaultdict[str, set[int]] = defaultdict(set)
    duplicates = bad_headers = 0
    for d in deliveries:
        partitions[d.aggregate_id].add(d.partition)
        if (d.msg_id_header is not None and d.msg_id_header != d.message_id) or (
            d.message_id in aggregate_of and aggregate_of[d.message_id] != d.aggregate_id
        ):
            bad_headers += 1
        if d.message_id in seen:
            duplicates += 1
            continue
        seen.add(d.message_id)
        firsts[d.aggregate_id].append(d.message_id)
    violations = []
    for a, ids in committed.items():
        got, want = firsts.get(a, []), [m for m in ids if m in seen]
        if got != want:
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), 0)
            violations.append(
                f"aggregate {a}: first deliveries differ from commit order at index {at} "
                f"(got {got[at : at + 3]}, want {want[at : at + 3]})"
            )
    violations += [
        f"aggregate {a} in partitions {sorted(p)}" for a, p in partitions.items() if len(p) > 1
    ]
    return Verdict(
        delivered=len(deliveries),
        lost=sorted(expected - seen),
        duplicates=duplicates,
        unexpected=sorted(seen - expected),
        order_violations=violations,
        bad_headers=bad_headers,
    )


def slot_tenures(logs: Sequence[str]) -> tuple[int, int]:
    """``(tenures, ended)`` of a replication slot's lease over the relays' logs: how many
    times a relay took the lease, and how many tenures ended with the holder seeing its loss
    (refused renewal, or its stream ended by the next holder). One reader at a time means
    ``tenures == ended + 1``: every takeover followed the end of the former tenure."""
    tenures = sum(log.count("lease taken") for log in logs)
    ended = sum(log.count("slot lease lost") + log.count("reading failed") for log in logs)
    return tenures, ended
