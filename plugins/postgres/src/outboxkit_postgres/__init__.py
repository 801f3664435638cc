"""outboxkit-postgres: the ``pg`` store, an outbox table in PostgreSQL (asyncpg), or a
WAL-only outbox read from a replication slot (``mode = "wal"``)."""

from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.store import PostgresStore
from outboxkit_postgres.wal_store import PostgresWalStore
from outboxkit_postgres.wal_writer import PostgresWalOutbox
from outboxkit_postgres.writer import PostgresOutbox

__all__ = [
    "PostgresOutbox",
    "PostgresSettings",
    "PostgresStore",
    "PostgresWalOutbox",
    "PostgresWalStore",
]
