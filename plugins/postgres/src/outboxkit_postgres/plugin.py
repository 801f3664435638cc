"""Entry point of the ``pg`` store plugin."""

from __future__ import annotations

from outboxkit.plugins import StorePlugin
from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.store import PostgresStore

__all__ = ["plugin"]

plugin = StorePlugin(
    name="pg",
    settings_type=PostgresSettings,
    create=PostgresStore,
    summary="PostgreSQL outbox table (asyncpg), LISTEN/NOTIFY wake-ups",
)
