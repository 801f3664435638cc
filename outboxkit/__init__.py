"""outboxkit: the transactional outbox for asyncio services."""

from outboxkit.errors import (
    ConfigurationError,
    InvalidMessageError,
    LeaseLostError,
    OutboxError,
    PluginNotFoundError,
    PublisherUnavailableError,
    SchemaMissingError,
    StoreUnavailableError,
    TransactionRequiredError,
)
from outboxkit.ids import uuid7
from outboxkit.message import Message, broker_headers, route, trace_context
from outboxkit.protocols import (
    DeadLetter,
    Delivered,
    Envelope,
    Failed,
    Lease,
    LeaseInfo,
    Outcome,
    Publisher,
    Relay,
    Store,
    StoreStatus,
)
from outboxkit.relay import ShardedRelay
from outboxkit.relay_settings import RelaySettings
from outboxkit.sharding import shard_of

__all__ = [
    "ConfigurationError",
    "DeadLetter",
    "Delivered",
    "Envelope",
    "Failed",
    "InvalidMessageError",
    "Lease",
    "LeaseInfo",
    "LeaseLostError",
    "Message",
    "OutboxError",
    "Outcome",
    "PluginNotFoundError",
    "Publisher",
    "PublisherUnavailableError",
    "Relay",
    "RelaySettings",
    "SchemaMissingError",
    "ShardedRelay",
    "Store",
    "StoreStatus",
    "StoreUnavailableError",
    "TransactionRequiredError",
    "broker_headers",
    "route",
    "shard_of",
    "trace_context",
    "uuid7",
]
__version__ = "0.1.0"
