"""The Kafka publisher passes the publisher conformance suite against the real broker."""

from __future__ import annotations

from outboxkit.testing import PublisherConformance


class TestKafkaConformance(PublisherConformance):
    """Fixtures ``publisher``, ``destination``, ``consume``, ``missing_destination``,
    ``refuse`` and ``unreachable_publisher``: conftest."""
