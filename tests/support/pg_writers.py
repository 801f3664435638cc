"""Writer harnesses (:class:`~outboxkit.testing.WriterHarness`) of every Postgres writer.

Each driver's harness writes the way that driver's users do (``async with session.begin()``,
``with transaction.atomic()``, ...); the outbox and the audit log are read back with asyncpg.
:func:`on_wal` turns a driver's harness into one of the WAL-only writer of its kind, which
reads back what the outbox's replication slot holds.
The sync drivers run each business transaction in a worker thread, so that concurrent writes
really are concurrent.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any
from uuid import UUID

import anyio
import asyncpg
from outboxkit_postgres import (
    PostgresOutbox,
    PostgresWalOutbox,
    SyncPostgresOutbox,
    SyncPostgresWalOutbox,
)
from outboxkit_postgres.codec import decode_wal_messages, envelope_from_row
from outboxkit_postgres.pgoutput import LogicalMessage

from outboxkit.message import Message
from outboxkit.testing import BusinessFailure, Outcome
from tests.support.postgres import slot_changes

__all__ = [
    "ASYNC_HARNESSES",
    "SYNC_HARNESSES",
    "AsyncpgHarness",
    "DjangoHarness",
    "PgHarness",
    "PsycopgAsyncHarness",
    "PsycopgHarness",
    "SqlalchemyAsyncHarness",
    "SqlalchemyHarness",
    "on_wal",
    "setup_django",
]


def _audit_sql(schema: str, messages: Sequence[Message]) -> str:
    rows = ", ".join(f"('{m.id}')" for m in messages)  # UUIDs: safe as literals
    return f"INSERT INTO {schema}.audit (id) VALUES {rows}"


class PgHarness:
    """Reading back, common to the drivers: outbox rows in sequence order, the audit log."""

    slot: str | None = None
    """The replication slot of a WAL-only outbox, read by :meth:`written` (see :func:`on_wal`)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    async def prepare(self) -> None:
        """Create the audit table (the outbox is migrated by the caller)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"CREATE TABLE {self.schema}.audit (n bigserial, id uuid)")
        finally:
            await conn.close()

    async def close(self) -> None:
        """Release what the harness opened."""

    async def written(self) -> list[Message]:
        if self.slot is not None:
            changes = await slot_changes(self.dsn, self.slot)
            prefix = f"outboxkit:{self.schema}.outbox"  # the database's other emitters too
            emitted = [c for c in changes if isinstance(c, LogicalMessage) and c.prefix == prefix]
            return [m for c in emitted for m in decode_wal_messages(c.content)]
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT seq, id, aggregate_type, aggregate_id, event_type, topic, key, "
                "headers::text AS headers, payload, content_type, created_at, attempts "
                f"FROM {self.schema}.outbox ORDER BY seq"
            )
            return [envelope_from_row(row, 0).message for row in rows]
        finally:
            await conn.close()

    async def commit_order(self) -> list[UUID]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return [
                r["id"] for r in await conn.fetch(f"SELECT id FROM {self.schema}.audit ORDER BY n")
            ]
        finally:
            await conn.close()


class AsyncHarness(PgHarness):
    """An async driver: ``connect`` yields a handle; ``transaction`` and ``rolled_back`` are
    its commit-on-success block and a block that rolls back explicitly."""

    outbox: PostgresOutbox | PostgresWalOutbox

    def connect(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    def transaction(self, conn: Any) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    def rolled_back(self, conn: Any) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def execute(self, conn: Any, sql: str) -> None:
        raise NotImplementedError

    def target(self, conn: Any) -> Any:
        """What the writer is given (the handle itself unless overridden)."""
        return conn

    async def write(
        self, messages: Sequence[Message], outcome: Outcome = "commit", pause: float = 0.0
    ) -> None:
        error: Exception | None = None
        async with self.connect() as conn:
            block = self.rolled_back(conn) if outcome == "rollback" else self.transaction(conn)
            async with block:
                try:
                    await self.outbox.add_many(self.target(conn), messages)
                except Exception as exc:
                    error = exc
                else:
                    await anyio.sleep(pause)
                    await self.execute(conn, _audit_sql(self.schema, messages))
                    if outcome == "raise":
                        raise BusinessFailure
        if error is not None:
            raise error

    async def write_outside(self, messages: Sequence[Message]) -> None:
        async with self.connect() as conn:
            await self.outbox.add_many(self.target(conn), messages)


class SyncHarness(PgHarness):
    """A sync driver: as :class:`AsyncHarness`, each write run in a worker thread."""

    outbox: SyncPostgresOutbox | SyncPostgresWalOutbox

    def connect(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def rolled_back(self, conn: Any) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def execute(self, conn: Any, sql: str) -> None:
        raise NotImplementedError

    def target(self, conn: Any) -> Any:
        return conn

    def _write(self, messages: Sequence[Message], outcome: Outcome, pause: float) -> None:
        error: Exception | None = None
        with self.connect() as conn:
            block = self.rolled_back(conn) if outcome == "rollback" else self.transaction(conn)
            with block:
                try:
                    self.outbox.add_many(self.target(conn), messages)
                except Exception as exc:
                    error = exc
                else:
                    time.sleep(pause)
                    self.execute(conn, _audit_sql(self.schema, messages))
                    if outcome == "raise":
                        raise BusinessFailure
        if error is not None:
            raise error

    def _outside(self, messages: Sequence[Message]) -> None:
        with self.connect() as conn:
            self.outbox.add_many(self.target(conn), messages)

    async def write(
        self, messages: Sequence[Message], outcome: Outcome = "commit", pause: float = 0.0
    ) -> None:
        await anyio.to_thread.run_sync(self._write, messages, outcome, pause)

    async def write_outside(self, messages: Sequence[Message]) -> None:
        await anyio.to_thread.run_sync(self._outside, messages)


# -- asyncpg ---------------------------------------------------------------------------------


class AsyncpgHarness(AsyncHarness):
    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema)
        self.outbox = PostgresOutbox(schema=schema)
        self.pool: asyncpg.Pool | None = None

    async def prepare(self) -> None:
        await super().prepare()
        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=8)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    def connect(self) -> AbstractAsyncContextManager[Any]:
        assert self.pool is not None
        return self.pool.acquire()

    def transaction(self, conn: Any) -> AbstractAsyncContextManager[Any]:
        return conn.transaction()  # type: ignore[no-any-return]

    @asynccontextmanager
    async def rolled_back(self, conn: Any) -> AsyncIterator[None]:
        tx = conn.transaction()
        await tx.start()
        try:
            yield
        finally:
            await tx.rollback()

    async def execute(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)


# -- psycopg ---------------------------------------------------------------------------------


class PsycopgAsyncHarness(AsyncHarness):
    """psycopg's AsyncConnection in autocommit mode, transactions by ``conn.transaction()``."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema)
        self.outbox = PostgresOutbox(schema=schema)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            yield conn

    def transaction(self, conn: Any) -> AbstractAsyncContextManager[Any]:
        return conn.transaction()  # type: ignore[no-any-return]

    @asynccontextmanager
    async def rolled_back(self, conn: Any) -> AsyncIterator[None]:
        async with conn.transaction(force_rollback=True):
            yield

    async def execute(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)


class PsycopgHarness(SyncHarness):
    """psycopg's Connection in its default (non-autocommit) mode: ``with conn.transaction()``."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema)
        self.outbox = SyncPostgresOutbox(schema=schema)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        import psycopg

        with psycopg.Connection.connect(self.dsn) as conn:
            yield conn

    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        return conn.transaction()  # type: ignore[no-any-return]

    def rolled_back(self, conn: Any) -> AbstractContextManager[Any]:
        return conn.transaction(force_rollback=True)  # type: ignore[no-any-return]

    def execute(self, conn: Any, sql: str) -> None:
        conn.execute(sql)


# -- SQLAlchemy ------------------------------------------------------------------------------


class SqlalchemyAsyncHarness(AsyncHarness):
    """An ``AsyncSession`` (or, with ``use="connection"``, an ``AsyncConnection``) of an
    async engine on ``driver`` (``asyncpg`` or ``psycopg``)."""

    def __init__(self, dsn: str, schema: str, driver: str, use: str = "session") -> None:
        super().__init__(dsn, schema)
        from sqlalchemy.ext.asyncio import create_async_engine

        self.outbox = PostgresOutbox(schema=schema)
        self.engine = create_async_engine(dsn.replace("postgresql://", f"postgresql+{driver}://"))
        self.use = use

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        from sqlalchemy.ext.asyncio import AsyncSession

        if self.use == "session":
            async with AsyncSession(self.engine) as session:
                yield session
        else:
            async with self.engine.connect() as conn:
                yield conn

    def transaction(self, conn: Any) -> AbstractAsyncContextManager[Any]:
        return conn.begin()  # type: ignore[no-any-return]

    @asynccontextmanager
    async def rolled_back(self, conn: Any) -> AsyncIterator[None]:
        await conn.begin()
        try:
            yield
        finally:
            await conn.rollback()

    async def execute(self, conn: Any, sql: str) -> None:
        from sqlalchemy import text

        await conn.execute(text(sql))


class SqlalchemyHarness(SyncHarness):
    """A sync ``Session`` (or ``Connection``) of an engine on psycopg."""

    def __init__(self, dsn: str, schema: str, use: str = "session") -> None:
        super().__init__(dsn, schema)
        from sqlalchemy import create_engine

        self.outbox = SyncPostgresOutbox(schema=schema)
        self.engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
        self.use = use

    async def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def connect(self) -> Iterator[Any]:
        from sqlalchemy.orm import Session

        if self.use == "session":
            with Session(self.engine) as session:
                yield session
        else:
            with self.engine.connect() as conn:
                yield conn

    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        return conn.begin()  # type: ignore[no-any-return]

    @contextmanager
    def rolled_back(self, conn: Any) -> Iterator[None]:
        conn.begin()
        try:
            yield
        finally:
            conn.rollback()

    def execute(self, conn: Any, sql: str) -> None:
        from sqlalchemy import text

        conn.execute(text(sql))


# -- Django ----------------------------------------------------------------------------------


def setup_django(dsn: str) -> None:
    """Configure Django from ``tests.support.django_settings`` for the server at ``dsn``."""
    os.environ["OUTBOXKIT_TEST_POSTGRES_URL"] = dsn
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.django_settings")
    import django

    django.setup()


class DjangoHarness(SyncHarness):
    """``transaction.atomic(using=alias)`` and ``connections[alias]``, on database ``alias``
    of ``tests.support.django_settings``; each thread closes its connection after a write."""

    def __init__(self, dsn: str, schema: str, alias: str = "default") -> None:
        super().__init__(dsn, schema)
        setup_django(dsn)
        self.outbox = SyncPostgresOutbox(schema=schema)
        self.alias = alias

    @contextmanager
    def connect(self) -> Iterator[Any]:
        from django.db import connection, connections

        conn = connection if self.alias == "default" else connections[self.alias]
        try:
            yield conn
        finally:
            conn.close()

    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        from django.db import transaction

        return transaction.atomic(using=self.alias)

    @contextmanager
    def rolled_back(self, conn: Any) -> Iterator[None]:
        from django.db import transaction

        with transaction.atomic(using=self.alias):
            yield
            transaction.set_rollback(True, using=self.alias)

    def execute(self, conn: Any, sql: str) -> None:
        with conn.cursor() as cursor:
            cursor.execute(sql)


Factory = Callable[[str, str], PgHarness]

ASYNC_HARNESSES: dict[str, Factory] = {
    "asyncpg": AsyncpgHarness,
    "sqlalchemy-asyncsession-asyncpg": lambda d, s: SqlalchemyAsyncHarness(d, s, "asyncpg"),
    "sqlalchemy-asyncsession-psycopg": lambda d, s: SqlalchemyAsyncHarness(d, s, "psycopg"),
    "sqlalchemy-asyncconnection-asyncpg": lambda d, s: SqlalchemyAsyncHarness(
        d, s, "asyncpg", "connection"
    ),
    "psycopg-async": PsycopgAsyncHarness,
}
SYNC_HARNESSES: dict[str, Factory] = {
    "psycopg": PsycopgHarness,
    "sqlalchemy-session": SqlalchemyHarness,
    "sqlalchemy-connection": lambda d, s: SqlalchemyHarness(d, s, "connection"),
    "django-default": DjangoHarness,
    "django-named": lambda d, s: DjangoHarness(d, s, "orders"),
}


def on_wal(factory: Factory) -> Factory:
    """``factory``'s harness writing with the WAL-only writer of its kind (async or sync) to
    the outbox of ``tests.support.postgres.wal_outbox``, reading back its slot."""

    def make(dsn: str, schema: str) -> PgHarness:
        harness = factory(dsn, schema)
        if isinstance(harness, AsyncHarness):
            harness.outbox = PostgresWalOutbox(schema=schema)
        elif isinstance(harness, SyncHarness):
            harness.outbox = SyncPostgresWalOutbox(schema=schema)
        harness.slot = f"outboxkit_{schema}_outbox"
        return harness

    return make


async def opened(factory: Factory, dsn: str, schema: str) -> PgHarness:
    """A harness made by ``factory`` and prepared."""
    harness = factory(dsn, schema)
    await harness.prepare()
    return harness
