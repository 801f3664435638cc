"""Entry point of the ``nats`` publisher plugin (group ``outboxkit.publishers``)."""

from __future__ import annotations

from outboxkit.plugins import PublisherPlugin
from outboxkit_nats.publisher import NatsPublisher
from outboxkit_nats.settings import NatsSettings

__all__ = ["plugin"]

plugin = PublisherPlugin(
    name="nats",
    settings_type=NatsSettings,
    create=NatsPublisher,
    summary="NATS JetStream (nats-py): Nats-Msg-Id dedup, PubAck-confirmed, ordered per aggregate",
)
