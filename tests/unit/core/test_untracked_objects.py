"""The relay's per-message objects stay out of the cyclic garbage collector.

A relay holds every claimed message until it is acknowledged, long enough for the collector
to move it to its oldest generation, whose full passes then walk every message in flight:
about 10 us a message on the bulk path (docs/benchmarks.md, "The garbage collector"). The
objects below hold no reference that could close a cycle, so they are not tracked.
"""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from outboxkit_kafka.batching import Record
from outboxkit_postgres.codec import envelope_from_row
from outboxkit_postgres.wal_relay import _Item, _Txn

from outboxkit import Message
from outboxkit.protocols import Envelope
from outboxkit.relay.sequencing import sequenced


def message() -> Message:
    return Message.create(
        aggregate_type="order", aggregate_id="o-1", event_type="Placed", payload={"n": 1}
    )


def test_messages_and_envelopes_are_not_tracked() -> None:
    m = message()
    envelope = Envelope(message=m, shard=0, position=1, sequence=1)
    (tagged,) = sequenced([envelope])

    assert not gc.is_tracked(m)
    assert not gc.is_tracked(envelope)
    assert not gc.is_tracked(tagged)


def test_envelopes_of_claimed_rows_are_not_tracked() -> None:
    m = message()
    row = {
        "seq": 7,
        "id": m.id,
        "aggregate_type": m.aggregate_type,
        "aggregate_id": m.aggregate_id,
        "event_type": m.event_type,
        "topic": None,
        "key": None,
        "headers": "{}",
        "payload": m.payload,
        "content_type": m.content_type,
        "created_at": datetime.now(UTC),
        "attempts": 0,
    }
    envelope = envelope_from_row(row, shard=3)

    assert envelope.message.id == m.id
    assert not gc.is_tracked(envelope)
    assert not gc.is_tracked(envelope.message)


def test_kafka_records_are_not_tracked() -> None:
    record = Record(0, message(), "orders", 0, b"o-1", (("a", b"b"),), 10)

    assert not gc.is_tracked(record)


def test_messages_read_from_a_slot_are_not_tracked() -> None:
    item = _Item(message(), _Txn(end_lsn=1, remaining=1, committed_at=datetime.now(UTC)))

    assert not gc.is_tracked(item)
    assert not gc.is_tracked(item.txn)
