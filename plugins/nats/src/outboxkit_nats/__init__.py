"""outboxkit-nats: a JetStream publisher for outboxkit (``--publisher nats``)."""

from __future__ import annotations

from outboxkit_nats.errors import StreamNotFoundError
from outboxkit_nats.inbox import read_msg
from outboxkit_nats.publisher import NatsPublisher, PublisherStats
from outboxkit_nats.settings import NatsSettings

__all__ = ["NatsPublisher", "NatsSettings", "PublisherStats", "StreamNotFoundError", "read_msg"]
