"""Conformance suites for stores, publishers and writers (needs the ``testing`` extra: pytest).

Subclass :class:`StoreConformance`, :class:`PublisherConformance` or :class:`WriterConformance`
in your plugin's tests
and provide the fixtures their docstrings list; every inherited test then runs against your
real backend. :class:`MemoryStore` is a store held in memory for unit tests of code around
the relay; it passes :class:`StoreConformance` too.
"""

from __future__ import annotations

from outboxkit.testing.helpers import (
    aggregates_in_shard,
    ids_by_aggregate,
    make_message,
    open_factory,
    order_by_aggregate,
    unique_name,
)
from outboxkit.testing.memory_store import MemoryClock, MemoryStore
from outboxkit.testing.publisher_suite import (
    Consume,
    PublisherConformance,
    ReceivedRecord,
    Refuse,
)
from outboxkit.testing.store_suite import StoreConformance, WriteMessages
from outboxkit.testing.writer_suite import (
    BusinessFailure,
    Outcome,
    WriterConformance,
    WriterHarness,
)

__all__ = [
    "BusinessFailure",
    "Consume",
    "MemoryClock",
    "MemoryStore",
    "Outcome",
    "PublisherConformance",
    "ReceivedRecord",
    "Refuse",
    "StoreConformance",
    "WriteMessages",
    "WriterConformance",
    "WriterHarness",
    "aggregates_in_shard",
    "ids_by_aggregate",
    "make_message",
    "open_factory",
    "order_by_aggregate",
    "unique_name",
]
