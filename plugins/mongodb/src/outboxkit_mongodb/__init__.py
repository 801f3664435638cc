"""outboxkit-mongodb: the embedded outbox for MongoDB (store plugin ``mongodb``).

Writers append messages to an array field of the aggregate document in the same
single-document update as the business change (:class:`MongoOutbox`); the relay side
(:class:`MongoStore`) claims, publishes and removes them shard by shard.
"""

from __future__ import annotations

from outboxkit_mongodb.errors import InvalidWriteError
from outboxkit_mongodb.inbox import MissingDocumentError, MongoInbox
from outboxkit_mongodb.inbox_admin import MongoInboxAdmin, MongoInboxSettings
from outboxkit_mongodb.settings import MongoSettings
from outboxkit_mongodb.store import MongoStore
from outboxkit_mongodb.writer import MongoOutbox

__all__ = [
    "InvalidWriteError",
    "MissingDocumentError",
    "MongoInbox",
    "MongoInboxAdmin",
    "MongoInboxSettings",
    "MongoOutbox",
    "MongoSettings",
    "MongoStore",
]
