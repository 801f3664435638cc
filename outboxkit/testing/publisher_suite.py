"""The conformance suite every :class:`~outboxkit.protocols.Publisher` plugin must pass."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import anyio
import msgspec
import pytest

from outboxkit.errors import PublisherUnavailableError
from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID, Message, broker_headers
from outboxkit.protocols import Delivered, Failed, Outcome, Publisher, ReportsDeliveries
from outboxkit.testing.helpers import ids_by_aggregate, make_message, order_by_aggregate

__all__ = ["Consume", "PublisherConformance", "ReceivedRecord", "Refuse"]

CONSUME_TIMEOUT = 20.0
ABSENCE_TIMEOUT = 3.0
"""How long ``consume`` looks for records that must not be on the broker."""
OPEN_TIMEOUT = 60.0
LATE_REPORT_WAIT = 0.5
"""How long a ``publish_reporting`` test waits after the call for reports that must not come."""
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class ReceivedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record as the broker holds it, read back by a test's ``consume`` fixture.

    ``key`` is None where the broker has no keys (e.g. NATS).
    """

    key: str | None
    """The record's key; None where the broker has no keys."""
    headers: dict[str, str]
    """The record's headers."""
    payload: bytes
    """The record's body."""


Consume = Callable[[str, int, float], Awaitable[list[ReceivedRecord]]]
"""``await consume(destination, count, timeout)``: up to ``count`` records of
``destination`` in broker order, waiting at most about ``timeout`` seconds."""

Refuse = Callable[[Message], Message]
"""``refuse(message)``: a copy of ``message`` (addressed to ``destination``) that the broker
refuses for good, so that publishing it yields ``Failed(retriable=False)``."""

Expected = Literal["delivered", "refused", "not sent"]


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


def _with_refusals(
    messages: Sequence[Message], refused: set[tuple[str, int]], refuse: Refuse
) -> tuple[list[Message], list[Expected]]:
    """``messages`` (made by ``make_message``), those at ``(aggregate, n)`` in ``refused``
    turned into refused ones, and the outcome each must get under the Publisher contract."""
    out: list[Message] = []
    expected: list[Expected] = []
    failed: set[str] = set()
    for message in messages:
        n = msgspec.json.decode(message.payload)["n"]
        if message.aggregate_id in failed:
            expected.append("not sent")
        elif (message.aggregate_id, n) in refused:
            message = refuse(message)
            failed.add(message.aggregate_id)
            expected.append("refused")
        else:
            expected.append("delivered")
        out.append(message)
    return out, expected


def _kind(outcome: Outcome) -> str:
    if isinstance(outcome, Delivered):
        return "delivered"
    if isinstance(outcome, Failed):
        return "not sent" if outcome.retriable else "refused"
    return f"not an Outcome: {outcome!r}"


def _assert_outcomes(outcomes: Sequence[Outcome], expected: Sequence[Expected]) -> None:
    """Each outcome of the kind expected at its position."""
    assert len(outcomes) == len(expected), f"{len(outcomes)} outcomes for {len(expected)} messages"
    wrong = [
        f"message {i}: expected {e}, got {o!r}"
        for i, (o, e) in enumerate(zip(outcomes, expected, strict=True))
        if _kind(o) != e
    ]
    assert not wrong, f"{len(wrong)} outcomes wrong; first: {wrong[0]}"


def _padded(message: Message, size: int) -> Message:
    """``message`` with ``size`` bytes of padding in its JSON payload."""
    body = msgspec.json.decode(message.payload) | {"pad": "p" * size}
    return msgspec.structs.replace(message, payload=msgspec.json.encode(body))


class _Reports:
    """The ``delivered`` callback of ``publish_reporting``: the indices it was told, and those
    told after the call had returned."""

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.late: list[int] = []
        self.returned = False

    def __call__(self, indices: Sequence[int]) -> None:
        (self.late if self.returned else self.indices).extend(indices)


async def _publish_reporting(
    publisher: Publisher, messages: Sequence[Message]
) -> tuple[list[Outcome], _Reports]:
    """``publish_reporting(messages)`` with a recording callback (the test is skipped for a
    publisher without :class:`~outboxkit.protocols.ReportsDeliveries`)."""
    if not isinstance(publisher, ReportsDeliveries):
        pytest.skip("the publisher does not report deliveries (no publish_reporting)")
    reports = _Reports()
    outcomes = await publisher.publish_reporting(messages, reports)
    reports.returned = True
    await anyio.sleep(LATE_REPORT_WAIT)  # a report still on its way would land in .late
    return outcomes, reports


def _assert_reports_agree(outcomes: Sequence[Outcome], reports: _Reports) -> None:
    """Every delivered message reported exactly once, before the call returned; nothing else."""
    assert not reports.late, f"indices reported after the call returned: {reports.late[:10]}"
    twice = sorted({i for i in reports.indices if reports.indices.count(i) > 1})
    assert not twice, f"indices reported more than once: {twice[:10]}"
    delivered = {i for i, o in enumerate(outcomes) if isinstance(o, Delivered)}
    unreported = sorted(delivered - set(reports.indices))
    assert not unreported, f"delivered but never reported: {unreported[:10]}"
    wrong = sorted(set(reports.indices) - delivered)
    assert not wrong, f"reported but not delivered: {[(i, outcomes[i]) for i in wrong[:5]]}"


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
    ``refuse``
        ``refuse(message) -> Message`` (:data:`Refuse`): a copy of ``message`` that the broker
        refuses for good (e.g. a payload over its size limit, or addressed to a missing
        destination); may be parametrized to cover several causes. A publisher that refuses
        nothing says so with a fixture that calls ``pytest.skip(reason)``.
    ``unreachable_publisher``
        A publisher, not opened, whose settings name a broker that cannot be reached (e.g.
        ``127.0.0.1:1``), with a connect timeout of a few seconds. A publisher that reaches
        nothing says so with a fixture that calls ``pytest.skip(reason)``.
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

    @pytest.mark.anyio
    async def test_refused_message_holds_back_only_the_later_messages_of_its_aggregate(
        self, publisher: Publisher, destination: str, consume: Consume, refuse: Refuse
    ) -> None:
        # "held": 0 and 1 delivered, 2 refused, 3 and 4 not sent; "other" all delivered
        plain = [make_message(a, n, topic=destination) for n in range(5) for a in ("held", "other")]
        messages, expected = _with_refusals(plain, {("held", 2)}, refuse)

        _assert_outcomes(await publisher.publish(messages), expected)

        delivered = [m for m, e in zip(messages, expected, strict=True) if e == "delivered"]
        # looking for one record more than there should be: nothing after "held" 2 was sent
        records = await consume(destination, len(delivered) + 1, ABSENCE_TIMEOUT)
        on_broker = order_by_aggregate(_record_ids(records))
        assert on_broker == ids_by_aggregate(delivered), "the broker holds other records"

    @pytest.mark.anyio
    async def test_outcomes_follow_the_input_order_after_failures(
        self, publisher: Publisher, destination: str, consume: Consume, refuse: Refuse
    ) -> None:
        # each aggregate fails at another position (aggregate 6: never), interleaved
        plain = [make_message(f"agg-{a}", n, topic=destination) for n in range(6) for a in range(7)]
        refused = {(f"agg-{a}", a) for a in range(6)}
        messages, expected = _with_refusals(plain, refused, refuse)

        _assert_outcomes(await publisher.publish(messages), expected)

        delivered = [m for m, e in zip(messages, expected, strict=True) if e == "delivered"]
        records = await consume(destination, len(delivered), CONSUME_TIMEOUT)
        assert order_by_aggregate(_record_ids(records)) == ids_by_aggregate(delivered)

    @pytest.mark.anyio
    async def test_per_aggregate_order_of_one_large_call_of_mixed_sizes(
        self, publisher: Publisher, destination: str, consume: Consume
    ) -> None:
        # Records of an aggregate sent concurrently (rather than one in flight per aggregate
        # or through an order-preserving producer) overtake each other when an earlier one is
        # larger: every third message of each aggregate carries 32 KiB.
        messages = [
            _padded(m, 32768) if (a + n) % 3 == 0 else m
            for n in range(12)
            for a in range(30)
            for m in [make_message(f"agg-{a}", n, topic=destination)]
        ]

        _assert_delivered(await publisher.publish(messages), len(messages))

        records = await consume(destination, len(messages), CONSUME_TIMEOUT)
        assert len(records) == len(messages), "messages lost or duplicated in a fault-free run"
        order = order_by_aggregate(_record_ids(records))
        assert order == ids_by_aggregate(messages), "an aggregate's records overtook each other"

    @pytest.mark.anyio
    async def test_reports_each_delivery_once_before_returning(
        self, publisher: Publisher, destination: str, consume: Consume
    ) -> None:
        # several batches per call: many aggregates, every fifth message carrying 16 KiB
        messages = [
            _padded(m, 16384) if (a + n) % 5 == 0 else m
            for n in range(8)
            for a in range(25)
            for m in [make_message(f"agg-{a}", n, topic=destination)]
        ]
        empty, none = await _publish_reporting(publisher, [])
        assert empty == [] and none.indices == [], "an empty call reports nothing"

        outcomes, reports = await _publish_reporting(publisher, messages)

        _assert_delivered(outcomes, len(messages))
        _assert_reports_agree(outcomes, reports)
        records = await consume(destination, len(messages), CONSUME_TIMEOUT)
        assert len(records) == len(messages), "messages lost or duplicated in a fault-free run"

    @pytest.mark.anyio
    async def test_reports_no_refused_message_nor_any_after_it(
        self, publisher: Publisher, destination: str, refuse: Refuse
    ) -> None:
        # each aggregate fails at another position (aggregate 6: never), interleaved
        plain = [make_message(f"agg-{a}", n, topic=destination) for n in range(6) for a in range(7)]
        messages, expected = _with_refusals(plain, {(f"agg-{a}", a) for a in range(6)}, refuse)

        outcomes, reports = await _publish_reporting(publisher, messages)

        _assert_outcomes(outcomes, expected)
        _assert_reports_agree(outcomes, reports)

    @pytest.mark.anyio
    async def test_open_unreachable_raises_unavailable_and_close_still_works(
        self, unreachable_publisher: Publisher
    ) -> None:
        with anyio.fail_after(OPEN_TIMEOUT), pytest.raises(PublisherUnavailableError) as caught:
            await unreachable_publisher.open()

        text = str(caught.value)
        assert text.strip() and "\n" not in text, f"not a one-line message: {text!r}"
        await unreachable_publisher.close()
        await unreachable_publisher.close()

    @pytest.mark.anyio
    async def test_close_twice(self, publisher: Publisher) -> None:
        await publisher.close()
        await publisher.close()
