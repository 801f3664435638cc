"""Entry point of the ``pg`` store plugin."""

from __future__ import annotations

from outboxkit.plugins import StorePlugin
from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.wal_store import create_store

__all__ = ["plugin"]

plugin = StorePlugin(
    name="pg",
    settings_type=PostgresSettings,
    create=create_store,
    summary="PostgreSQL outbox table (asyncpg), LISTEN/NOTIFY or log wake-ups; WAL-only mode",
)
