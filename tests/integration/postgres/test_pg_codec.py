"""The row <-> message conversions of the Postgres plugin (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from outboxkit_postgres.codec import envelope_from_row, writer_arguments

from outboxkit.message import Message


def _row(message: Message) -> dict[str, object]:
    return {
        "id": message.id,
        "aggregate_type": message.aggregate_type,
        "aggregate_id": message.aggregate_id,
        "event_type": message.event_type,
        "topic": message.topic,
        "key": message.key,
        "headers": '{"a": "1", "b": "x"}',
        "payload": memoryview(message.payload),
        "content_type": message.content_type,
        "created_at": message.created_at,
        "seq": 7,
        "attempts": 2,
    }


def test_claimed_row_becomes_an_equal_message_without_sharing_state() -> None:
    original = Message(
        aggregate_type="order",
        aggregate_id="o-1",
        event_type="Placed",
        payload=b"{}",
        topic="orders",
        key="k",
        headers={"a": "1", "b": "x"},
        id=uuid4(),
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    first = envelope_from_row(_row(original), shard=3)
    second = envelope_from_row(_row(original), shard=3)
    assert first.message == original
    assert type(first.message.payload) is bytes
    assert (first.shard, first.position, first.attempts) == (3, 7, 2)
    assert first.message.headers is not second.message.headers


def test_single_message_arguments_are_the_general_paths_first_elements() -> None:
    one = Message(
        aggregate_type="order", aggregate_id="o-1", event_type="Placed", headers={"h": "v"}
    )
    two = Message(aggregate_type="order", aggregate_id="o-2", event_type="Placed")
    single = writer_arguments((one,), True)
    pair = writer_arguments((one, two), False)
    assert [column[0] for column in pair[:-1]] == list(single[:-1])
    assert single[-1] is True and pair[-1] is False
