"""outboxkit: the transactional outbox for asyncio services."""

from outboxkit.errors import (
    ConfigurationError,
    DeadLetterNotFoundError,
    InvalidMessageError,
    LeaseLostError,
    OutboxError,
    PluginNotFoundError,
    PublisherUnavailableError,
    SchemaMissingError,
    ServerUnavailableError,
    StoreUnavailableError,
    TransactionRequiredError,
)
from outboxkit.message import Message, broker_headers, route, trace_context
from outboxkit.protocols import (
    DeadLetter,
    DeadLetterPolicy,
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
from outboxkit.relay.settings import RelaySettings
from outboxkit.sharding import shard_of
from outboxkit.uuidv7 import uuid7

__all__ = [
    "ConfigurationError",
    "DeadLetter",
    "DeadLetterNotFoundError",
    "DeadLetterPolicy",
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
    "ServerUnavailableError",
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
