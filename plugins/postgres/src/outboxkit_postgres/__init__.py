"""outboxkit-postgres: the ``pg`` store, an outbox table in PostgreSQL (asyncpg), its
writers for asyncpg, SQLAlchemy, psycopg and Django, and a WAL-only outbox read from a
replication slot (``mode = "wal"``)."""

from outboxkit_postgres.inbox import PostgresInbox, SyncPostgresInbox
from outboxkit_postgres.inbox_admin import PostgresInboxAdmin, PostgresInboxSettings
from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.store import PostgresStore
from outboxkit_postgres.wal_store import PostgresWalStore
from outboxkit_postgres.wal_writer import PostgresWalOutbox, SyncPostgresWalOutbox
from outboxkit_postgres.writer import PostgresOutbox, SyncPostgresOutbox, UnsupportedConnectionError

__all__ = [
    "PostgresInbox",
    "PostgresInboxAdmin",
    "PostgresInboxSettings",
    "PostgresOutbox",
    "PostgresSettings",
    "PostgresStore",
    "PostgresWalOutbox",
    "PostgresWalStore",
    "SyncPostgresInbox",
    "SyncPostgresOutbox",
    "SyncPostgresWalOutbox",
    "UnsupportedConnectionError",
]
