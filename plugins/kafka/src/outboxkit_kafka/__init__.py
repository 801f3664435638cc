"""outboxkit-kafka: an Apache Kafka publisher for outboxkit (``--publisher kafka``)."""

from __future__ import annotations

from outboxkit_kafka.inbox import read_record
from outboxkit_kafka.publisher import CONTENT_TYPE_HEADER, KafkaPublisher, PublisherStats
from outboxkit_kafka.settings import KafkaSettings

__all__ = [
    "CONTENT_TYPE_HEADER",
    "KafkaPublisher",
    "KafkaSettings",
    "PublisherStats",
    "read_record",
]
