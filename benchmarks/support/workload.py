"""Deterministic benchmark messages: N messages of a fixed size spread over A aggregates.

Message ``i`` belongs to aggregate ``i % A`` and carries the header ``bench-seq`` (its rank
within the aggregate), so a consumer can check per-aggregate order.
"""

from __future__ import annotations

import os

from outboxkit.message import Message

__all__ = ["SEQ_HEADER", "aggregate_id", "make_message", "make_messages"]

SEQ_HEADER = "bench-seq"
AGGREGATE_TYPE = "bench"
EVENT_TYPE = "BenchEvent"


def aggregate_id(index: int) -> str:
    return f"agg-{index:07d}"


def make_message(topic: str, aggregate: int, seq: int, payload: bytes) -> Message:
    """One benchmark message of ``aggregate`` with rank ``seq``."""
    return Message(
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=aggregate_id(aggregate),
        event_type=EVENT_TYPE,
        payload=payload,
        topic=topic,
        headers={SEQ_HEADER: str(seq)},
        content_type="application/octet-stream",
    )


def make_messages(topic: str, count: int, aggregates: int, payload_bytes: int) -> list[Message]:
    """``count`` messages over ``aggregates`` aggregates, in commit order."""
    payload = os.urandom(payload_bytes)
    return [make_message(topic, i % aggregates, i // aggregates, payload) for i in range(count)]
