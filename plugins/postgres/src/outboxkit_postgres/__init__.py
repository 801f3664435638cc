"""outboxkit-postgres: the ``pg`` store, an outbox table in PostgreSQL (asyncpg)."""

from outboxkit_postgres.settings import PostgresSettings
from outboxkit_postgres.store import PostgresStore
from outboxkit_postgres.writer import PostgresOutbox

__all__ = ["PostgresOutbox", "PostgresSettings", "PostgresStore"]
