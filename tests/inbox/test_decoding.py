"""Decoding outboxkit messages from headers and bytes (no server needed)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from outboxkit.inbox import UnreadableMessageError, decode
from outboxkit.inbox.contract import Verdict
from outboxkit.inbox.decoding import record_origin
from outboxkit.inbox.judging import judge
from outboxkit.message import HEADER_SEQUENCE, Message, broker_headers


def _wire(message: Message, sequence: int | None = None) -> list[tuple[str, bytes]]:
    tagged = message.headers | ({HEADER_SEQUENCE: str(sequence)} if sequence else {})
    sent = Message(
        **{**{f: getattr(message, f) for f in message.__struct_fields__}, "headers": tagged}
    )
    headers = [(k, v.encode()) for k, v in broker_headers(sent)]
    return [*headers, ("content-type", message.content_type.encode())]


def test_a_published_message_decodes_to_the_same_message() -> None:
    sent = Message.create(
        aggregate_type="order",
        aggregate_id="o-1",
        event_type="order.paid",
        payload={"total": 12},
        topic="orders",
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    got = decode(_wire(sent, 17), sent.payload, topic="orders", key=b"o-1")
    assert got.message.id == sent.id
    assert (got.aggregate_type, got.aggregate_id, got.event_type) == ("order", "o-1", "order.paid")
    assert got.sequence == 17 and got.data == {"total": 12}
    assert got.message.headers == sent.headers and got.message.key is None
    assert abs((got.message.created_at - sent.created_at).total_seconds()) < 0.002


def test_a_record_without_outboxkit_headers_is_one_clear_error() -> None:
    with pytest.raises(UnreadableMessageError) as caught:
        decode([("x", b"1")], b"{}", source="orders[0]@5")
    text = str(caught.value)
    assert "\n" not in text and "orders[0]@5" in text and "not published by outboxkit" in text


def test_an_undecodable_payload_is_the_same_error() -> None:
    sent = Message.create(aggregate_type="o", aggregate_id="1", event_type="e", payload={})
    with pytest.raises(UnreadableMessageError, match="not valid JSON"):
        decode(_wire(sent), b"{not json", source="t[1]@2")
    with pytest.raises(UnreadableMessageError, match="not a UUID"):
        decode(
            [
                ("outboxkit-id", b"x"),
                ("outboxkit-aggregate-type", b"o"),
                ("outboxkit-aggregate-id", b"1"),
                ("outboxkit-event-type", b"e"),
            ],
            b"{}",
        )


def test_writers_cannot_forge_outboxkit_headers_but_the_relay_sets_the_sequence() -> None:
    m = Message.create(
        aggregate_type="o", aggregate_id="1", event_type="e", headers={"outboxkit-id": "forged"}
    )
    assert dict(broker_headers(m))["outboxkit-id"] == str(m.id)


def test_judge_skips_duplicates_and_older_events_of_an_aggregate() -> None:
    def msg(agg: str, seq: int):  # type: ignore[no-untyped-def]
        m = Message.create(aggregate_type="a", aggregate_id=agg, event_type="e")
        return decode(_wire(m, seq), m.payload)

    a2, a1, b5, a3 = msg("A", 2), msg("A", 1), msg("B", 5), msg("A", 3)
    batch = [a2, a1, b5, a3, a3]
    new = {a2.id, a1.id, b5.id, a3.id}
    verdicts = judge(batch, new, {("a", "B"): 5}, "skip").verdicts
    assert verdicts == [
        Verdict.FRESH,
        Verdict.STALE,
        Verdict.STALE,
        Verdict.FRESH,
        Verdict.DUPLICATE,
    ]
    assert judge(batch, new, {}, "off").verdicts[:4] == [Verdict.FRESH] * 4
    assert judge(batch, new - {a2.id}, {}, "park").verdicts[:2] == [
        Verdict.DUPLICATE,
        Verdict.FRESH,
    ]
    assert bool(Verdict.FRESH) and not any(
        map(bool, (Verdict.DUPLICATE, Verdict.STALE, Verdict.PARKED))
    )


def test_the_core_inbox_imports_no_driver() -> None:
    code = (
        "import sys, outboxkit, outboxkit.inbox, outboxkit.inbox.sqlite, "
        "outboxkit.inbox.faststream, outboxkit.cli.app\n"
        "bad = [m for m in ('aiokafka', 'nats', 'asyncpg', 'pymongo', 'psycopg', 'sqlalchemy') "
        "if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


class _CoreMsg:
    subject = "orders.1"

    @property
    def metadata(self) -> object:
        raise ValueError("not a JetStream message")  # as nats-py's Msg does


def test_record_origin_names_kafka_records_and_nats_messages() -> None:
    kafka = SimpleNamespace(topic="orders", partition=2, offset=7)
    assert record_origin(kafka) == ("orders", "orders[2]@7")
    assert record_origin(_CoreMsg()) == ("orders.1", "orders.1")
    stream = SimpleNamespace(stream="ORDERS", sequence=SimpleNamespace(stream=42))
    jetstream = SimpleNamespace(subject="orders.1", metadata=stream)
    assert record_origin(jetstream) == ("orders.1", "orders.1 (stream ORDERS seq 42)")
    assert record_origin(None) == (None, "")
