"""The conformance suite every :class:`~outboxkit.protocols.Publisher` plugin must pass."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import msgspec
import pytest

from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID, Message, broker_headers
from outboxkit.protocols import Delivered, Failed, Outcome, Publisher
from outboxkit.testing.helpers import ids_by_aggregate, make_message, order_by_aggregate

__all__ = ["Consume", "PublisherConformance", "ReceivedRecord"]

CONSUME_TIMEOUT = 20.0
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class ReceivedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record as the broker holds it, read back by a test's ``consume`` fixture.

    ``key`` is None where the broker has no keys (e.g. NATS).
    """

    key: str | None
    headers: dict[str, str]
    payload: bytes


Consume = Callable[[str, int, float], Awaitable[list[ReceivedRecord]]]
"""``await consume(destination, count, timeout)``: up to ``count`` records of
``destination`` in broker order, waiting at most about ``timeout`` seconds."""


def _addressed(messages: Sequence[Message], destination: str) -> list[Message]:
    return [msgspec.structs.replace(m, topic=destination) for m in messages]


def _interleaved(aggregates: int, per_aggregate: int, destination: str) -> list[Message]:
    return [
        make_message(f"agg-{a}", n, topic=destination)
        for n in range(per_aggregate)
        for a in range(aggregates)
    ]


def _assert_delivered(outcomes: Sequence[Outcome], count: int) -> None:
    assert len(outcomes) == count, f"expected {count} outcomes, got {len(outcomes)}"
    failed = [o for o in outcomes if not isinstance(o, Delivered)]
    assert not failed, f"fault-free publish failed: {failed[:3]}"


def _record_ids(records: Sequence[ReceivedRecord]) -> list[tuple[str, str]]:
    return [(r.headers[HEADER_AGGREGATE_ID], r.headers[HEADER_ID]) for r in records]


class PublisherConformance:
    """Base class of a publisher plugin's conformance tests: subclass it as ``TestXxx``.

    The subclass provides these fixtures:

    ``publisher``
        An opened :class:`~outboxkit.protocols.Publisher` whose routing sends a message to
        ``message.topic`` (the default template ``{topic}``). Close it after the test.
    ``destination``
        A fresh topic/subject name per test, already existing on the broker (and captured,
        e.g. by a JetStream stream).
    ``consume``
        ``async consume(destination: str, count: int, timeout: float) -> list[ReceivedRecord]``
        reading what the broker holds for ``destination``, in broker order (per partition),
        returning early once ``count`` records arrived.
    ``missing_destination`` (optional)
        A name with no topic/stream behind it: publishing there must yield
        ``Failed(retriable=False)`` carrying the broker's reason. Without this fixture that
        test is skipped.
    """

    @pytest.mark.anyio
    async def test_publish_empty_returns_empty(self, publisher: Publisher) -> None:
        assert await publisher.publish([]) == []

    @pytest.mark.anyio
    async def test_one_outcome_per_message_all_delivered(
        self, publisher: Publisher, destination: str, consume: Consume
    ) -> None:
        messages = _interleaved(3, 4, destination)

        _assert_delivered(await publisher.publish(messages), len(messages))

        records = await consume(destination, len(messages), CONSUME_TIMEOUT)
        assert sorted(r.headers[HEADER_ID] for r in records) == sorted(str(m.id) for m in messages)

    @pytest.mark.anyio
    async def test_record_carries_headers_key_and_payload(
        self, publisher: Publisher, destination: str, consume: Consume
    ) -> None:
        binary = Message(
            aggregate_type="blob",
            aggregate_id="blob-1",
            event_type="blob.stored",
            payload=bytes(range(256)),
            content_type="application/octet-stream",
            headers={"tenant": "acme", "traceparent": TRACEPARENT},
        )
        messages = _addressed(
            [binary, make_message("order-1", 7, headers={"x-source": "suite"})], destination
        )

        _assert_delivered(await publisher.publish(messages), 2)

        records = await consume(destination, 2, CONSUME_TIMEOUT)
        by_id = {r.headers.get(HEADER_ID): r for r in records}
        for message in messages:
            record = by_id.get(str(message.id))
            assert record is not None, f"message {message.id} not found on the broker"
            assert record.payload == message.payload
            expected = dict(broker_headers(message))
            assert {k: record.headers.get(k) for k in expected} == expected
            assert record.key in (None, message.partition_key)
        assert by_id[str(binary.id)].headers["traceparent"] == TRACEPARENT

    @pytest.mark.anyio
    async def test_per_aggregate_order(
        self, publisher: Publisher, destination: str, consume: Consume
    ) -> None:
        messages = _interleaved(20, 25, destination)
        for start in range(0, len(messages), 100):
            _assert_delivered(await publisher.publish(messages[start : start + 100]), 100)

        records = await consume(destination, len(messages), CONSUME_TIMEOUT)

        assert len(records) == len(messages), "messages lost or duplicated in a fault-free run"
        assert order_by_aggregate(_record_ids(records)) == ids_by_aggregate(messages)

    @pytest.mark.anyio
    async def test_missing_destination_fails_non_retriable(
        self,
        publisher: Publisher,
        destination: str,
        consume: Consume,
        request: pytest.FixtureRequest,
    ) -> None:
        try:
            missing: str = request.getfixturevalue("missing_destination")
        except pytest.FixtureLookupError:
            pytest.skip("no missing_destination fixture: the broker has no missing destinations")

        (outcome,) = await publisher.publish([make_message("lost-1", topic=missing)])

        assert isinstance(outcome, Failed), f"publish to {missing!r} must fail, got {outcome}"
        assert not outcome.retriable and outcome.error.strip()
        good = make_message("found-1", topic=destination)
        _assert_delivered(await publisher.publish([good]), 1)
        records = await consume(destination, 1, CONSUME_TIMEOUT)
        assert [r.headers[HEADER_ID] for r in records] == [str(good.id)]

    @pytest.mark.anyio
    async def test_same_message_twice_is_delivered_twice(
        self, publisher: Publisher, destination: str
    ) -> None:
        message = make_message("dup-1", topic=destination)

        _assert_delivered(await publisher.publish([message]), 1)
        _assert_delivered(await publisher.publish([message]), 1)
