"""The connection objects the writers and the inbox accept, recognised by class name (no
driver imported).

Each is turned into a :class:`Target`: whether it is inside a transaction, how to open one (for
the error if it is not), and how to run a statement on it, in the placeholder style of its
driver, and get its rows back (the writers ignore them; the inbox reads them). SQLAlchemy
sessions and connections run the statement through SQLAlchemy (``exec_driver_sql``), so it
joins the transaction SQLAlchemy began, whatever the driver.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from outboxkit.errors import ConfigurationError

__all__ = [
    "AsyncTarget",
    "Rows",
    "Statement",
    "Style",
    "SyncTarget",
    "UnsupportedConnectionError",
    "error_chain",
    "format_style",
]

Style = Literal["dollar", "format"]
"""Placeholders: ``$1`` (asyncpg) or ``%s`` (psycopg, Django)."""

Statement = Callable[[Style], tuple[str, tuple[Any, ...]]]
"""A statement and its arguments in a placeholder style."""

Rows = Sequence[Sequence[Any]]
"""What a statement returned (no rows if it returns none), each row indexable by column."""

R = TypeVar("R")


class UnsupportedConnectionError(ConfigurationError, TypeError):
    """A writer was given an object it cannot write through; nothing was written."""


@dataclass(frozen=True)
class _Target(Generic[R]):
    in_transaction: bool
    how: str
    """How to open a transaction on it (completes "call it inside ...")."""
    run: Callable[[Statement], R]


AsyncTarget = _Target[Awaitable[Rows]]
SyncTarget = _Target[Rows]

ASYNC_ACCEPTED = (
    "an asyncpg Connection, an SQLAlchemy AsyncSession or AsyncConnection, or a psycopg "
    "AsyncConnection"
)
SYNC_ACCEPTED = (
    "a psycopg Connection, an SQLAlchemy Session or Connection (psycopg driver), or a Django "
    "database connection (django.db.connection, connections[alias])"
)


def _classes(conn: object) -> set[str]:
    """``package.Class`` of each class of ``conn`` (drivers re-export their classes under
    other module names, e.g. psycopg's ``psycopg.connection.Connection`` as ``psycopg``)."""
    return {f"{c.__module__.partition('.')[0]}.{c.__qualname__}" for c in type(conn).__mro__}


def _kind(conn: object) -> str | None:
    classes = _classes(conn)
    for kind, names in _KINDS.items():
        if classes & names:
            return kind
    return None


_KINDS = {
    "asyncpg": {"asyncpg.Connection", "asyncpg.PoolConnectionProxy"},
    "psycopg-async": {"psycopg.AsyncConnection"},
    "psycopg": {"psycopg.Connection"},
    "sqlalchemy-async-session": {"sqlalchemy.AsyncSession", "sqlalchemy.async_scoped_session"},
    "sqlalchemy-async-connection": {"sqlalchemy.AsyncConnection"},
    "sqlalchemy-session": {"sqlalchemy.Session", "sqlalchemy.scoped_session"},
    "sqlalchemy-connection": {"sqlalchemy.Connection"},
    "django": {"django.BaseDatabaseWrapper", "django.ConnectionProxy"},
}
_ASYNC_KINDS = {
    "asyncpg",
    "psycopg-async",
    "sqlalchemy-async-session",
    "sqlalchemy-async-connection",
}


_PARAMETER = re.compile(r"\$(\d+)")


def format_style(sql: str) -> tuple[str, tuple[int, ...]]:
    """``sql`` with ``%s`` placeholders (a literal ``%`` doubled) and, for each placeholder,
    the index of its ``$n`` argument (``$1`` may occur several times)."""
    order = tuple(int(n) - 1 for n in _PARAMETER.findall(sql))
    return _PARAMETER.sub("%s", sql.replace("%", "%%")), order


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors behind it (causes, contexts, SQLAlchemy's ``orig``), for their
    SQLSTATE (``sqlstate`` or ``pgcode``) through the wrappers of SQLAlchemy and Django."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo += [current.__context__, current.__cause__]
        if isinstance(orig, BaseException):
            todo.append(orig)


def _refuse(
    writer: str, conn: object, accepted: str, other: str | None
) -> UnsupportedConnectionError:
    kind = _kind(conn)
    given = f"{type(conn).__module__}.{type(conn).__qualname__}"
    hint = (
        f": for {'async' if kind in _ASYNC_KINDS else 'sync'} code use {other}"
        if kind is not None and other is not None
        else ""
    )
    return UnsupportedConnectionError(
        f"{writer} takes {accepted}; got {given}{hint} (nothing was written)"
    )


def _sqlalchemy_style(dialect: Any, writer: str) -> Style:
    if dialect.name != "postgresql" or dialect.driver not in (
        "asyncpg",
        "psycopg",
        "psycopg_async",
    ):
        raise UnsupportedConnectionError(
            f"{writer} writes to PostgreSQL through the asyncpg or psycopg driver; this "
            f"SQLAlchemy engine uses {dialect.name}+{dialect.driver}: use a "
            "postgresql+asyncpg:// or postgresql+psycopg:// URL (nothing was written)"
        )
    return "dollar" if dialect.paramstyle == "numeric_dollar" else "format"


def _psycopg_in_transaction(conn: Any) -> bool:
    # pq.TransactionStatus: IDLE (no transaction), ACTIVE, INTRANS, INERROR, UNKNOWN.
    return bool(conn.info.transaction_status.name != "IDLE")


def async_target(conn: Any, writer: str, other: str | None) -> AsyncTarget:
    """The target of an async writer (or inbox); :class:`UnsupportedConnectionError` for
    anything else, naming ``other`` (the sync counterpart, if any) for a sync connection."""
    kind = _kind(conn)
    if kind == "asyncpg":

        async def run_asyncpg(statement: Statement) -> Rows:
            sql, args = statement("dollar")
            return await conn.fetch(sql, *args)  # type: ignore[no-any-return]

        return AsyncTarget(
            conn.is_in_transaction(), "`async with conn.transaction():`", run_asyncpg
        )
    if kind == "psycopg-async":

        async def run_psycopg(statement: Statement) -> Rows:
            sql, args = statement("format")
            cursor = await conn.execute(sql, args)
            return await cursor.fetchall() if cursor.description is not None else []

        return AsyncTarget(
            _psycopg_in_transaction(conn), "`async with conn.transaction():`", run_psycopg
        )
    if kind in ("sqlalchemy-async-session", "sqlalchemy-async-connection"):
        session = kind == "sqlalchemy-async-session"

        async def run_sqlalchemy(statement: Statement) -> Rows:
            connection = await conn.connection() if session else conn
            sql, args = statement(_sqlalchemy_style(connection.dialect, writer))
            result = await connection.exec_driver_sql(sql, args)
            return result.all() if result.returns_rows else []

        how = "`async with session.begin():`" if session else "`async with conn.begin():`"
        return AsyncTarget(conn.in_transaction(), how, run_sqlalchemy)
    raise _refuse(writer, conn, ASYNC_ACCEPTED, other)


def sync_target(conn: Any, writer: str, other: str | None) -> SyncTarget:
    """The target of a sync writer; :class:`UnsupportedConnectionError` for anything else."""
    kind = _kind(conn)
    if kind == "psycopg":

        def run_psycopg(statement: Statement) -> Rows:
            sql, args = statement("format")
            cursor = conn.execute(sql, args)
            return cursor.fetchall() if cursor.description is not None else []

        return SyncTarget(_psycopg_in_transaction(conn), "`with conn.transaction():`", run_psycopg)
    if kind in ("sqlalchemy-session", "sqlalchemy-connection"):
        session = kind == "sqlalchemy-session"

        def run_sqlalchemy(statement: Statement) -> Rows:
            connection = conn.connection() if session else conn
            sql, args = statement(_sqlalchemy_style(connection.dialect, writer))
            result = connection.exec_driver_sql(sql, args)
            return result.all() if result.returns_rows else []

        how = "`with session.begin():`" if session else "`with conn.begin():`"
        return SyncTarget(conn.in_transaction(), how, run_sqlalchemy)
    if kind == "django":
        if conn.vendor != "postgresql":
            raise UnsupportedConnectionError(
                f"{writer} writes to PostgreSQL; Django database {conn.alias!r} is "
                f"{conn.vendor}: pass the connection of a PostgreSQL database (nothing was "
                "written)"
            )

        def run_django(statement: Statement) -> Rows:
            sql, args = statement("format")
            with conn.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall() if cursor.description is not None else []

        return SyncTarget(
            bool(conn.in_atomic_block or not conn.get_autocommit()),
            f"`with transaction.atomic(using={conn.alias!r}):`",
            run_django,
        )
    raise _refuse(writer, conn, SYNC_ACCEPTED, other)
