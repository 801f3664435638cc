"""Entry point of the ``mongodb`` store plugin."""

from __future__ import annotations

from outboxkit.plugins import StorePlugin
from outboxkit_mongodb.settings import MongoSettings
from outboxkit_mongodb.store import MongoStore

__all__ = ["plugin"]

plugin = StorePlugin(
    name="mongodb",
    settings_type=MongoSettings,
    create=MongoStore,
    summary="MongoDB embedded outbox: an outbox array in each aggregate document",
)
