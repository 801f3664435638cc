"""The NATS publisher against the shared JetStream server: headers, dedup, order, failures."""

from __future__ import annotations

import random
from collections import defaultdict

import msgspec
import pytest
from nats.js.client import JetStreamContext
from outboxkit_nats import NatsPublisher, NatsSettings, StreamNotFoundError
from outboxkit_nats.connection import mask_server
from outboxkit_nats.subjects import wire_size

from outboxkit.errors import ConfigurationError, PublisherUnavailableError
from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID, Message
from outboxkit.protocols import Delivered, Failed
from tests.support.nats import Stream, read_stream

pytestmark = pytest.mark.anyio


def event(aggregate_id: str, n: int = 0, **fields: object) -> Message:
    return Message.create(
        aggregate_type="order",
        aggregate_id=aggregate_id,
        event_type="order.changed",
        payload={"n": n},
        **fields,  # type: ignore[arg-type]
    )


async def test_headers_subject_and_pub_ack(open_publisher, js: JetStreamContext, stream: Stream):
    publisher = await open_publisher(
        subject_template=stream.prefix + ".{aggregate_type}.{event_type}", stream=stream.name
    )
    message = event("o-1", 7, headers={"traceparent": "00-abc-def-01"})

    assert await publisher.publish([message]) == [Delivered(duplicate=False)]

    [got] = await read_stream(js, stream.name, stream.wildcard)
    assert got.subject == f"{stream.prefix}.order.order.changed"
    assert got.data == message.payload
    assert got.headers is not None
    assert got.headers["Nats-Msg-Id"] == str(message.id)
    assert got.headers[HEADER_ID] == str(message.id)
    assert got.headers[HEADER_AGGREGATE_ID] == "o-1"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["traceparent"] == "00-abc-def-01"


async def test_republish_in_window_is_a_duplicate_stored_once(
    open_publisher, js: JetStreamContext, stream: Stream
):
    publisher = await open_publisher(subject_template=stream.subject("{aggregate_type}"))
    messages = [event(f"agg-{i}", i) for i in range(5)]

    first = await publisher.publish(messages)
    # Another publisher (another relay process after a crash) sends the same messages again.
    again = await open_publisher(subject_template=stream.subject("{aggregate_type}"))
    second = await again.publish(messages)

    assert first == [Delivered(duplicate=False)] * 5
    assert second == [Delivered(duplicate=True)] * 5
    assert again.stats.duplicates == 5 and publisher.stats.duplicates == 0
    stored = await read_stream(js, stream.name, stream.wildcard)
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [str(m.id) for m in messages]


async def test_per_aggregate_order_with_many_aggregates_in_flight(
    open_publisher, js: JetStreamContext, stream: Stream
):
    publisher = await open_publisher(
        subject_template=stream.subject("{aggregate_type}"), max_in_flight=64
    )
    per_aggregate = {f"agg-{a}": [event(f"agg-{a}", n) for n in range(20)] for a in range(250)}
    # Interleave aggregates at random while keeping each one's own order.
    queues = {a: list(ms) for a, ms in per_aggregate.items()}
    batch: list[Message] = []
    rng = random.Random(5)
    while queues:
        aggregate = rng.choice(list(queues))
        batch.append(queues[aggregate].pop(0))
        if not queues[aggregate]:
            del queues[aggregate]

    outcomes = await publisher.publish(batch)

    assert outcomes == [Delivered()] * len(batch)
    stored = await read_stream(js, stream.name, stream.wildcard)
    seen: dict[str, list[int]] = defaultdict(list)
    for msg in stored:
        seen[msg.headers[HEADER_AGGREGATE_ID]].append(msgspec.json.decode(msg.data)["n"])
    assert len(stored) == len(batch)
    assert seen == {a: list(range(20)) for a in per_aggregate}


async def test_failure_holds_back_the_rest_of_its_aggregate_only(
    open_publisher, js: JetStreamContext, stream: Stream
):
    publisher = await open_publisher(subject_template=stream.subject("{topic}"))
    a1, bad, a3 = event("a", 1), event("a", 2, topic="not a subject"), event("a", 3)
    b1 = event("b", 1)

    outcomes = await publisher.publish([a1, bad, b1, a3])

    assert outcomes[0] == Delivered() and outcomes[2] == Delivered()
    assert isinstance(outcomes[1], Failed) and not outcomes[1].retriable
    assert "not a subject" in outcomes[1].error
    assert isinstance(outcomes[3], Failed) and outcomes[3].retriable
    assert outcomes[3].error.startswith(f"not sent: earlier message {bad.id}")
    stored = await read_stream(js, stream.name, stream.wildcard)
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [str(a1.id), str(b1.id)]
    assert publisher.stats.not_sent == 1 and publisher.stats.failed == 1


async def test_subject_without_stream_is_a_dead_letter(open_publisher, stream: Stream):
    publisher = await open_publisher(subject_template="obkt-nostream.{aggregate_type}")
    first, second = event("x", 1), event("x", 2)

    outcomes = await publisher.publish([first, second])

    assert isinstance(outcomes[0], Failed) and not outcomes[0].retriable
    assert "no JetStream stream captures subject 'obkt-nostream.order'" in outcomes[0].error
    assert isinstance(outcomes[1], Failed) and outcomes[1].retriable


async def test_max_payload_counts_headers_exactly_and_over_it_is_a_dead_letter(
    open_publisher, js: JetStreamContext, stream: Stream
):
    """The server closes the connection on a publish over max_payload (headers included), so
    the publisher must refuse it itself, to the byte: the largest message that fits goes
    through, one byte more is a dead letter and the connection survives."""
    publisher = await open_publisher(subject_template=stream.subject("{aggregate_type}"))
    limit = publisher._client.max_payload

    def blob(size: int) -> Message:
        return Message(aggregate_type="t", aggregate_id="o", event_type="e", payload=b"x" * size)

    _, headers = publisher._prepare(blob(0))
    header_bytes = wire_size(b"", headers)
    fits, over = blob(limit - header_bytes), blob(limit - header_bytes + 1)

    assert await publisher.publish([fits]) == [Delivered()]
    [outcome] = await publisher.publish([over])

    assert isinstance(outcome, Failed) and not outcome.retriable
    assert f"max_payload of {limit}" in outcome.error
    assert await publisher.publish([event("o", 1)]) == [Delivered()]
    assert publisher._client.stats["reconnects"] == 0


async def test_stream_max_msg_size_refusal_is_a_dead_letter_with_reason(
    open_publisher, js: JetStreamContext
):
    from tests.support.nats import make_stream

    small = await make_stream(js, max_msg_size=512)
    try:
        publisher = await open_publisher(subject_template=small.subject("{aggregate_type}"))
        big = Message.create(
            aggregate_type="order", aggregate_id="o", event_type="e", payload=b"y" * 2048
        )
        outcomes = await publisher.publish([big, event("o", 2)])
    finally:
        await js.delete_stream(small.name)

    assert isinstance(outcomes[0], Failed) and not outcomes[0].retriable
    assert "JetStream refused" in outcomes[0].error and "size" in outcomes[0].error
    assert isinstance(outcomes[1], Failed) and outcomes[1].retriable


async def test_expected_stream_mismatch_is_a_dead_letter(
    open_publisher, js: JetStreamContext, stream: Stream
):
    from tests.support.nats import make_stream

    other = await make_stream(js)
    try:
        publisher = await open_publisher(
            subject_template=other.subject("{aggregate_type}"), stream=stream.name
        )
        [outcome] = await publisher.publish([event("o")])
    finally:
        await js.delete_stream(other.name)

    assert isinstance(outcome, Failed) and not outcome.retriable
    assert "expected stream" in outcome.error.lower()


async def test_open_names_a_missing_stream(nats_url: str):
    publisher = NatsPublisher(NatsSettings(servers=[nats_url], stream="OBKT_MISSING_STREAM"))

    with pytest.raises(StreamNotFoundError, match="'OBKT_MISSING_STREAM' does not exist"):
        await publisher.open()
    await publisher.close()


async def test_open_fails_fast_and_masks_credentials_when_unreachable():
    from tests.support.nats import free_port

    url = f"nats://relay:hunter2@127.0.0.1:{free_port()}"
    publisher = NatsPublisher(NatsSettings(servers=[url], connect_timeout=1.0))

    with pytest.raises(PublisherUnavailableError) as caught:
        await publisher.open()

    assert "hunter2" not in str(caught.value)
    assert "nats://relay:***@127.0.0.1" in str(caught.value)


async def test_publish_before_open_is_retriable():
    publisher = NatsPublisher(NatsSettings())
    [outcome] = await publisher.publish([event("o")])
    assert isinstance(outcome, Failed) and outcome.retriable and "open()" in outcome.error


async def test_close_is_idempotent(open_publisher, stream: Stream):
    publisher = await open_publisher(subject_template=stream.subject("{aggregate_type}"))
    await publisher.close()
    await publisher.close()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("nats://s3cr3t@host:4222", "nats://***@host:4222"),
        ("nats://u:p4ss@host:4222", "nats://u:***@host:4222"),
        ("tls://host:4222", "tls://host:4222"),
    ],
)
def test_mask_server(url: str, masked: str):
    assert mask_server(url) == masked


@pytest.mark.parametrize(
    "settings",
    [
        {"subject_template": "{nope}"},
        {"stream": "has.dot"},
        {"tls_cert": "c.pem"},
        {"password": "p"},
        {"token": "t", "user": "u"},
        {"servers": [""]},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, object]):
    with pytest.raises((ConfigurationError, msgspec.ValidationError)):
        msgspec.convert(settings, NatsSettings)
