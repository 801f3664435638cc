"""Entry point of the ``kafka`` publisher plugin (group ``outboxkit.publishers``)."""

from __future__ import annotations

from outboxkit.plugins import PublisherPlugin
from outboxkit_kafka.publisher import KafkaPublisher
from outboxkit_kafka.settings import KafkaSettings

__all__ = ["plugin"]

plugin = PublisherPlugin(
    name="kafka",
    settings_type=KafkaSettings,
    create=KafkaPublisher,
    summary="Apache Kafka (aiokafka): idempotent producer, acks=all, key = aggregate id",
)
