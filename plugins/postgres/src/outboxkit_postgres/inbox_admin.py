"""Operations on a PostgreSQL inbox: ``outboxkit inbox migrate|prune|status --inbox pg``."""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Annotated

import asyncpg
import msgspec

from outboxkit.errors import SchemaMissingError, StoreUnavailableError
from outboxkit.inbox.contract import InboxPlugin
from outboxkit.masking import mask_dsn
from outboxkit.uuidv7 import uuid7_floor
from outboxkit_postgres.names import OutboxNames

__all__ = ["PostgresInboxAdmin", "PostgresInboxSettings", "plugin"]


_V7_MIN = uuid7_floor(0)


class PostgresInboxSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where a consumer's inbox lives (flags ``--pg-inbox-*``, env ``OUTBOXKIT_PG_INBOX_*``)."""

    dsn: Annotated[
        str,
        msgspec.Meta(description="the consumer's PostgreSQL DSN (password masked in output)"),
    ] = "postgresql://postgres@127.0.0.1:5432/postgres"
    schema: Annotated[str, msgspec.Meta(description="schema of the inbox tables")] = "public"
    table: Annotated[str, msgspec.Meta(description="name of the inbox table")] = "inbox"
    connect_timeout: Annotated[
        float, msgspec.Meta(gt=0, description="seconds to wait for a connection")
    ] = 10.0


class PostgresInboxAdmin:
    """Creates the inbox tables, prunes old ids in small batches, counts rows."""

    def __init__(self, settings: PostgresInboxSettings) -> None:
        self.settings = settings
        """Where the inbox lives."""
        self.names = OutboxNames(settings.schema, settings.table)
        """The validated schema and table names."""
        self._conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        """Connect (``StoreUnavailableError`` naming the masked DSN if it cannot)."""
        if self._conn is not None:
            return
        dsn = self.settings.dsn
        try:
            self._conn = await asyncpg.connect(dsn, timeout=self.settings.connect_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
            reason = str(exc).replace(dsn, mask_dsn(dsn))
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {mask_dsn(dsn)}: {type(exc).__name__}: {reason}"
            ) from None

    async def close(self) -> None:
        """Disconnect. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            raise StoreUnavailableError("the inbox admin is not open: call open() first")
        return self._conn

    async def migrate(self) -> None:
        """Create the inbox tables if missing (``sql/inbox.sql``), under a lock."""
        sql = files("outboxkit_postgres").joinpath("sql/inbox.sql").read_text("utf-8")
        conn = self._connection()
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.names.qualified)
            await conn.execute(self.names.render(sql))

    async def prune(self, older_than: float, batch_size: int) -> int:
        """Delete the ids of events written over ``older_than`` s ago, ``batch_size`` rows
        per statement, each its own short transaction.

        Ids are UUIDv7, whose first 48 bits are the event's write time in milliseconds, so
        "older than" is a range of the primary key: no index of its own, nothing added to
        the consumer's hot path. (Ids of other versions are never pruned.)
        """
        query = self.names.render(
            "DELETE FROM {{schema}}.{{table}} WHERE id IN (SELECT id FROM {{schema}}.{{table}} "
            "WHERE id < $1 AND id >= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
        )
        cutoff = uuid7_floor(time.time() - older_than)
        conn = self._connection()
        removed = 0
        while True:
            try:
                status = await conn.execute(query, cutoff, _V7_MIN, batch_size)
            except asyncpg.UndefinedTableError:
                raise self._missing() from None
            count = int(status.split()[-1])
            removed += count
            if count < batch_size:
                return removed

    async def counts(self) -> dict[str, int]:
        """Rows of the inbox, its aggregates and parked tables."""
        conn = self._connection()
        counts: dict[str, int] = {}
        for label, suffix in (
            ("processed", ""),
            ("aggregates", "_aggregates"),
            ("parked", "_parked"),
        ):
            query = self.names.render(f"SELECT count(*) FROM {{{{schema}}}}.{{{{table}}}}{suffix}")
            try:
                counts[label] = int(await conn.fetchval(query))
            except asyncpg.UndefinedTableError:
                raise self._missing() from None
        return counts

    def _missing(self) -> SchemaMissingError:
        return SchemaMissingError(
            f"inbox {self.names.qualified} does not exist: run `outboxkit inbox migrate "
            "--inbox pg` with the same settings"
        )


plugin = InboxPlugin(
    name="pg",
    settings_type=PostgresInboxSettings,
    create=PostgresInboxAdmin,
    summary="PostgreSQL inbox tables (asyncpg)",
)
"""The ``pg`` inbox plugin (entry point ``outboxkit.inboxes``)."""
