"""outboxkit-postgres: the ``pg`` store, an outbox table in PostgreSQL (asyncpg), and its
writers for asyncpg, SQLAlchemy, psycopg and Django."""

from outboxkit_postgres.inbox import PostgresInbox
from outboxkit_postgres.inbox_admin import PostgresInboxAdmin, PostgresInboxSettings
from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.store import PostgresStore
from outboxkit_postgres.writer import PostgresOutbox, SyncPostgresOutbox, UnsupportedConnectionError

__all__ = [
    "PostgresInbox",
    "PostgresInboxAdmin",
    "PostgresInboxSettings",
    "PostgresOutbox",
    "PostgresSettings",
    "PostgresStore",
    "SyncPostgresOutbox",
    "UnsupportedConnectionError",
]
