"""Kafka-specific behaviour of the publisher, against the real broker (no auto-created topics)."""

from __future__ import annotations

import socket
from collections import defaultdict
from importlib.metadata import entry_points

import msgspec
import pytest
from outboxkit_kafka import KafkaPublisher, KafkaSettings

from outboxkit.errors import ConfigurationError, PublisherUnavailableError
from outboxkit.message import (
    HEADER_AGGREGATE_ID,
    HEADER_AGGREGATE_TYPE,
    HEADER_EVENT_TYPE,
    HEADER_ID,
    HEADER_SEQUENCE,
    Message,
    broker_headers,
)
from outboxkit.plugins import PUBLISHER_GROUP, PublisherPlugin
from outboxkit.protocols import Delivered, Failed
from outboxkit.testing import make_message, unique_name
from tests.support.kafka import PublisherFactory, consume_records, topics

pytestmark = pytest.mark.anyio

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_key_is_aggregate_id_and_one_aggregate_stays_in_one_partition(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    publisher = await open_publisher()
    async with topics(kafka_bootstrap, partitions=6) as (topic,):
        messages = [make_message(f"agg-{a}", n, topic=topic) for n in range(5) for a in range(30)]
        outcomes = await publisher.publish(messages)
        assert outcomes == [Delivered()] * len(messages)

        records = await consume_records(kafka_bootstrap, topic, len(messages), 20)

    assert len(records) == len(messages)
    partitions: defaultdict[bytes, set[int]] = defaultdict(set)
    for record in records:
        headers = dict(record.headers)
        assert record.key == headers[HEADER_AGGREGATE_ID]
        partitions[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values()), partitions
    used = set().union(*partitions.values())
    assert len(used) > 1, "30 aggregates should spread over several of the 6 partitions"


async def test_explicit_key_overrides_aggregate_id(
    kafka_bootstrap: str, publisher: KafkaPublisher, destination: str
) -> None:
    message = Message.create(
        aggregate_type="order", aggregate_id="o-1", event_type="e", topic=destination, key="k-9"
    )
    assert await publisher.publish([message]) == [Delivered()]
    (record,) = await consume_records(kafka_bootstrap, destination, 1, 20)
    assert record.key == b"k-9"


async def test_headers_carry_ids_types_trace_context_and_content_type(
    kafka_bootstrap: str, publisher: KafkaPublisher, destination: str
) -> None:
    traced = Message.create(
        aggregate_type="invoice",
        aggregate_id="inv-7",
        event_type="invoice.paid",
        payload={"amount": 3},
        topic=destination,
        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
    )
    plain = make_message("order-3", topic=destination)

    assert await publisher.publish([traced, plain]) == [Delivered(), Delivered()]

    records = await consume_records(kafka_bootstrap, destination, 2, 20)
    by_id = {dict(r.headers)[HEADER_ID].decode(): dict(r.headers) for r in records}
    headers = by_id[str(traced.id)]
    assert headers[HEADER_AGGREGATE_TYPE] == b"invoice"
    assert headers[HEADER_AGGREGATE_ID] == b"inv-7"
    assert headers[HEADER_EVENT_TYPE] == b"invoice.paid"
    assert headers["traceparent"] == TRACEPARENT.encode()
    assert headers["tracestate"] == b"vendor=1"
    assert headers["content-type"] == b"application/json"
    assert "traceparent" not in by_id[str(plain.id)]
    assert by_id[str(plain.id)][HEADER_ID] == str(plain.id).encode()


async def test_headers_are_sent_in_broker_headers_order_then_content_type(
    kafka_bootstrap: str, publisher: KafkaPublisher, destination: str
) -> None:
    own = {"a": "1", HEADER_ID: "forged", "b": "é", HEADER_SEQUENCE: "42"}
    sequenced = make_message("o-1", topic=destination, headers=own)
    plain = make_message("o-2", topic=destination, headers={"c": "3"})

    assert await publisher.publish([sequenced, plain]) == [Delivered(), Delivered()]

    records = await consume_records(kafka_bootstrap, destination, 2, 20)
    sent = {dict(r.headers)[HEADER_ID].decode(): list(r.headers) for r in records}
    for message in (sequenced, plain):
        expected = [(k, v.encode()) for k, v in broker_headers(message)]
        expected.append(("content-type", message.content_type.encode()))
        assert sent[str(message.id)] == expected
    assert [k for k, _ in sent[str(sequenced.id)]][-2:] == [HEADER_SEQUENCE, "content-type"]


async def test_topic_template_routes_by_aggregate_type(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    prefix = unique_name("okt-route").replace("_", "-")
    publisher = await open_publisher(topic_template=prefix + ".{aggregate_type}.events")
    admin_names = [f"{prefix}.order.events", f"{prefix}.invoice.events"]
    async with topics(kafka_bootstrap, names=admin_names):
        order = make_message("o-1", aggregate_type="order", topic="ignored-by-template")
        invoice = make_message("i-1", aggregate_type="invoice")

        assert await publisher.publish([order, invoice]) == [Delivered(), Delivered()]

        for name, message in zip(admin_names, (order, invoice), strict=True):
            records = await consume_records(kafka_bootstrap, name, 1, 20)
            assert [dict(r.headers)[HEADER_ID] for r in records] == [str(message.id).encode()]


@pytest.mark.timeout(25)
async def test_unknown_topic_fails_non_retriable_fast_and_holds_back_its_aggregate(
    kafka_bootstrap: str, open_publisher: PublisherFactory, destination: str
) -> None:
    # A request timeout longer than the test's bound: aiokafka's own metadata wait would
    # block a whole request timeout before failing.
    publisher = await open_publisher(request_timeout_ms=60000, delivery_timeout_ms=60000)
    missing = unique_name("okt-missing").replace("_", "-")
    first = make_message("a-1", 0, topic=missing)
    later = make_message("a-1", 1, topic=destination)
    other = make_message("b-1", 0, topic=destination)

    outcomes = await publisher.publish([first, later, other])

    assert isinstance(outcomes[0], Failed) and not outcomes[0].retriable
    assert missing in outcomes[0].error and "does not exist" in outcomes[0].error
    assert isinstance(outcomes[1], Failed) and outcomes[1].retriable
    assert outcomes[1].error.startswith("not sent: earlier message")
    assert outcomes[2] == Delivered()
    records = await consume_records(kafka_bootstrap, destination, 2, 2)
    assert [dict(r.headers)[HEADER_ID] for r in records] == [str(other.id).encode()]
    # the answer is reused for the next call and the producer is not left tracking the topic
    again = await publisher.publish([make_message(f"c-{n}", topic=missing) for n in range(3)])
    assert all(isinstance(o, Failed) and not o.retriable for o in again)
    assert publisher.stats.failed == 4 and publisher.stats.not_sent == 1


async def test_invalid_topic_name_fails_non_retriable(publisher: KafkaPublisher) -> None:
    (outcome,) = await publisher.publish([make_message("a-1", topic="no spaces allowed")])
    assert isinstance(outcome, Failed) and not outcome.retriable
    assert "not a valid Kafka topic name" in outcome.error


async def test_record_too_large_fails_non_retriable_and_holds_back_its_aggregate(
    kafka_bootstrap: str, open_publisher: PublisherFactory, destination: str
) -> None:
    publisher = await open_publisher(max_request_size=16384)
    big = msgspec.structs.replace(make_message("big-1", topic=destination), payload=b"x" * 20000)
    after = make_message("big-1", 1, topic=destination)
    small = make_message("small-1", topic=destination)

    outcomes = await publisher.publish([big, after, small])

    assert isinstance(outcomes[0], Failed) and not outcomes[0].retriable
    assert "MessageSizeTooLarge" in outcomes[0].error and destination in outcomes[0].error
    assert isinstance(outcomes[1], Failed) and outcomes[1].retriable
    assert outcomes[2] == Delivered()
    records = await consume_records(kafka_bootstrap, destination, 2, 2)
    assert [dict(r.headers)[HEADER_ID] for r in records] == [str(small.id).encode()]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cause", ["oversized", "missing topic"])
async def test_refused_message_holds_back_only_the_later_messages_of_its_aggregate(
    kafka_bootstrap: str, open_publisher: PublisherFactory, destination: str, cause: str
) -> None:
    # Issue 14: m1 was held back (and at last dead-lettered) because m2, a later message of
    # its aggregate, could not be sent; m3 then reached the topic before m1.
    publisher = await open_publisher()
    m1, m2, m3 = (make_message("A", n, topic=destination) for n in range(3))
    if cause == "oversized":  # 2 MB, over the default max_request_size of 1 MiB
        m2 = msgspec.structs.replace(m2, payload=b"x" * (2 << 20))
    else:
        m2 = msgspec.structs.replace(m2, topic=unique_name("okt-missing").replace("_", "-"))

    outcomes = await publisher.publish([m1, m2, m3])

    assert outcomes[0] == Delivered(), outcomes[0]
    assert isinstance(outcomes[1], Failed) and not outcomes[1].retriable
    assert outcomes[2] == Failed(f"not sent: earlier message {m2.id} of aggregate 'A' failed", True)
    assert publisher.stats.not_sent == 1
    records = await consume_records(kafka_bootstrap, destination, 2, 2)
    assert [dict(r.headers)[HEADER_ID] for r in records] == [str(m1.id).encode()]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.timeout(30)
async def test_unreachable_bootstrap_raises_unavailable_on_open() -> None:
    servers = f"127.0.0.1:{_closed_port()}"
    publisher = KafkaPublisher(
        KafkaSettings(
            bootstrap_servers=servers,
            connect_timeout_ms=5000,
            sasl_mechanism="PLAIN",
            sasl_username="relay",
            sasl_password="s3cret-pw",
        )
    )
    with pytest.raises(PublisherUnavailableError) as caught:
        await publisher.open()
    text = str(caught.value)
    assert servers in text and "\n" not in text
    assert "refused" in text.lower()
    assert "s3cret-pw" not in text
    await publisher.close()


async def test_publish_before_open_fails_retriable() -> None:
    publisher = KafkaPublisher(KafkaSettings())
    (outcome,) = await publisher.publish([make_message("a-1", topic="t")])
    assert isinstance(outcome, Failed) and outcome.retriable and "not open" in outcome.error


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"topic_template": "{aggregate}.events"}, "unknown fields"),
        ({"topic_template": "{topic"}, "malformed"),
        ({"bootstrap_servers": "localhost"}, "not host:port"),
        ({"bootstrap_servers": " , "}, "empty"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u"}, "sasl_password"),
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"ssl_certfile": "/tmp/c.pem"}, "together"),
    ],
)
def test_bad_settings_raise_configuration_error(settings: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        KafkaSettings(**settings)  # type: ignore[arg-type]


def test_missing_compression_library_is_a_configuration_error() -> None:
    from outboxkit_kafka.settings import codec_available

    missing = [c for c in ("lz4", "zstd") if not codec_available(c)]
    if not missing:
        pytest.skip("lz4 and zstandard are both installed")
    with pytest.raises(ConfigurationError, match="pip install"):
        KafkaSettings(compression=missing[0])  # type: ignore[arg-type]


async def test_gzip_compression_round_trip(
    kafka_bootstrap: str, open_publisher: PublisherFactory, destination: str
) -> None:
    publisher = await open_publisher(compression="gzip")
    message = make_message("z-1", topic=destination)
    assert await publisher.publish([message]) == [Delivered()]
    (record,) = await consume_records(kafka_bootstrap, destination, 1, 20)
    assert record.value == message.payload


def test_plugin_is_registered_with_its_settings() -> None:
    (entry_point,) = entry_points(group=PUBLISHER_GROUP, name="kafka")
    plugin = entry_point.load()
    assert isinstance(plugin, PublisherPlugin) and plugin.name == "kafka"
    assert plugin.settings_type is KafkaSettings
    publisher = plugin.create(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    assert isinstance(publisher, KafkaPublisher)
