"""The writers: add messages inside the caller's transaction, whatever its driver.

:class:`PostgresOutbox` takes the connections of async code (asyncpg, SQLAlchemy's
``AsyncSession``/``AsyncConnection``, psycopg's ``AsyncConnection``), :class:`SyncPostgresOutbox`
those of sync code (psycopg's ``Connection``, SQLAlchemy's ``Session``/``Connection``, Django's
database connections). Both run the same statement (``add_one`` for one message, the
``<table>_add`` function for several, from ``sql/queries.sql``) in one round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from outboxkit.errors import (
    ConfigurationError,
    InvalidMessageError,
    OutboxError,
    SchemaMissingError,
    transaction_required,
)
from outboxkit.message import Message, check_messages
from outboxkit_postgres.codec import writer_arguments
from outboxkit_postgres.configured import WriterConfig, default_values, writer_config
from outboxkit_postgres.drivers import (
    AsyncTarget,
    Statement,
    Style,
    SyncTarget,
    UnsupportedConnectionError,
    async_target,
    error_chain,
    format_style,
    sync_target,
)
from outboxkit_postgres.names import OutboxNames, query_texts
from outboxkit_postgres.privileges import writer_denied

__all__ = ["PostgresOutbox", "SyncPostgresOutbox", "UnsupportedConnectionError"]


_TEXT_FIELDS = ("aggregate_type", "aggregate_id", "event_type", "topic", "key", "content_type")
_SCHEMA_MISSING = frozenset({"42P01", "42883", "3F000"})  # undefined table/function, schema
_PRIVILEGE = "42501"
_DEFAULTS = {"schema": "public", "table": "outbox"}


def _validate(message: Message) -> None:
    """Raise :class:`InvalidMessageError` for anything else the insert would fail on."""
    texts = [getattr(message, name) or "" for name in _TEXT_FIELDS]
    texts += [text for pair in message.headers.items() for text in pair]
    if any("\x00" in text for text in texts):
        raise InvalidMessageError(
            f"message {message.id} of aggregate {message.aggregate_id!r} has a NUL character "
            "in a text field or header, which PostgreSQL cannot store: remove it"
        )
    if message.created_at.tzinfo is None:
        raise InvalidMessageError(f"message {message.id}: created_at must be timezone-aware")


def _in_styles(
    text: Callable[[Style], tuple[str, tuple[int, ...] | None]], args: tuple[Any, ...]
) -> Statement:
    """The statement ``text(style)`` (its SQL and the order of its ``$n`` arguments) with
    ``args``."""

    def in_style(style: Style) -> tuple[str, tuple[Any, ...]]:
        sql, order = text(style)
        return sql, args if order is None else tuple(args[i] for i in order)

    return in_style


def sqlstate(cause: BaseException) -> str | None:
    """The SQLSTATE of a driver's error (asyncpg, psycopg: ``sqlstate``; psycopg2: ``pgcode``)."""
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


@dataclass(frozen=True)
class _Plan:
    """What a writer resolved at its first add: names, options and the statements."""

    names: OutboxNames
    notify: bool
    max_payload_bytes: int
    sources: dict[str, str]

    @cached_property
    def statements(self) -> dict[tuple[bool, Style], tuple[str, tuple[int, ...] | None]]:
        texts = query_texts()
        out: dict[tuple[bool, Style], tuple[str, tuple[int, ...] | None]] = {}
        for one, name in ((True, "add_one"), (False, "add")):
            sql = self.names.render(texts[name])
            out[(one, "dollar")] = (sql, None)
            out[(one, "format")] = format_style(sql)
        return out

    def statement(self, messages: Sequence[Message]) -> Statement:
        args = writer_arguments(messages, self.notify)
        one = len(messages) == 1
        return _in_styles(lambda style: self.statements[(one, style)], args)

    def database_error(self, exc: BaseException) -> OutboxError | None:
        """The outboxkit error of a driver's error (SQLSTATE found through the wrappers of
        SQLAlchemy and Django), or None if it is none of the writer's known failures."""
        for cause in error_chain(exc):
            state = sqlstate(cause)
            if state in _SCHEMA_MISSING:
                where = "; ".join(
                    f"{name} from {source}"
                    for name, source in self.sources.items()
                    if name in _DEFAULTS
                )
                return SchemaMissingError(
                    f"outbox {self.names.qualified} does not exist: run `outboxkit migrate "
                    f"--store pg` with the same schema and table" + (f" ({where})" if where else "")
                )
            if state == _PRIVILEGE:
                return writer_denied(cause, self.names)
        return None


class _Writer:
    """What both writers share: options, configuration, validation and errors."""

    _name: ClassVar[str]
    _other: ClassVar[str]
    """The writer of the same mode for the other kind of code (async/sync)."""
    _mode: ClassVar[str] = "table"
    _of_other_mode: ClassVar[str]
    """The writer of the other mode for the same kind of code."""

    def __init__(
        self,
        *,
        schema: str | None = None,
        table: str | None = None,
        max_payload_bytes: int | None = None,
        notify: bool | None = None,
        read_config: bool = True,
    ) -> None:
        self._explicit: dict[str, Any] = {
            name: value
            for name, value in (
                ("schema", schema),
                ("table", table),
                ("notify", notify),
                ("max_payload_bytes", max_payload_bytes),
            )
            if value is not None
        }
        OutboxNames(schema or "public", table or "outbox")  # bad names fail here
        self._read_config = read_config
        self._plan: _Plan | None = None
        self._lock = threading.Lock()

    def _resolve(self) -> _Plan:
        """The plan, made at the first add (so a service may set its environment after
        building the writer): explicit options, else the relay's configuration."""
        plan = self._plan
        if plan is not None:
            return plan
        with self._lock:
            if self._plan is None:
                self._plan = self._make_plan()
            return self._plan

    def _make_plan(self) -> _Plan:
        config = writer_config() if self._read_config else WriterConfig(default_values())
        for name, value in self._explicit.items():
            source = config.sources.get(name)
            configured = config.values[name]
            if source is not None and value != configured:
                raise ConfigurationError(
                    f"{self._name}({name}={value!r}) disagrees with {source} = {configured!r}, "
                    "which the relay reads too, so they would not share one outbox: "
                    f"drop {name}= to take the configured value, or make them equal "
                    "(read_config=False ignores the configuration)"
                )
        mode_source = config.sources.get("mode")
        if mode_source is not None and config.values["mode"] != self._mode:
            raise ConfigurationError(
                f"{self._name} writes to an outbox of mode {self._mode}, but {mode_source} = "
                f"{config.values['mode']!r}, which the relay reads too: use "
                f"{self._of_other_mode} (or set the mode to {self._mode!r})"
            )
        values = {**config.values, **self._explicit}
        return _Plan(
            names=OutboxNames(values["schema"], values["table"]),
            notify=bool(values["notify"]),
            max_payload_bytes=int(values["max_payload_bytes"]),
            sources={k: v for k, v in config.sources.items() if k not in self._explicit},
        )

    def _prepare(
        self, messages: Sequence[Message], target: Callable[[], AsyncTarget | SyncTarget]
    ) -> tuple[_Plan, Statement, AsyncTarget | SyncTarget] | None:
        """Everything before the write: configuration, validation, the transaction check."""
        plan = self._resolve()
        check_messages(messages, plan.max_payload_bytes)
        for message in messages:
            _validate(message)
        found = target()
        if not messages:
            return None
        if not found.in_transaction:
            raise transaction_required(f"{self._name}.add", f"call it inside {found.how}")
        return plan, self._statement(plan, messages), found

    def _statement(self, plan: _Plan, messages: Sequence[Message]) -> Statement:
        """The one statement that writes ``messages``."""
        return plan.statement(messages)

    def _error(self, plan: _Plan, exc: BaseException) -> OutboxError | None:
        """The outboxkit error of a driver's error, or None to let it through."""
        return plan.database_error(exc)

    async def _add_async(self, conn: Any, messages: Sequence[Message]) -> None:
        prepared = self._prepare(messages, lambda: async_target(conn, self._name, self._other))
        if prepared is None:
            return
        plan, statement, target = prepared
        try:
            await target.run(statement)  # type: ignore[misc]
        except Exception as exc:
            error = self._error(plan, exc)
            if error is None:
                raise
            raise error from None

    def _add_sync(self, conn: Any, messages: Sequence[Message]) -> None:
        prepared = self._prepare(messages, lambda: sync_target(conn, self._name, self._other))
        if prepared is None:
            return
        plan, statement, target = prepared
        try:
            target.run(statement)
        except Exception as exc:
            error = self._error(plan, exc)
            if error is None:
                raise
            raise error from None

    @property
    def names(self) -> OutboxNames:
        """The outbox written to (read from the configuration on first use)."""
        return self._resolve().names


class PostgresOutbox(_Writer):
    """Adds messages to the outbox table in the caller's transaction (async code).

    ``conn`` is what the service already has: an asyncpg ``Connection`` (or pool connection),
    an SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` (asyncpg or psycopg driver), or a
    psycopg ``AsyncConnection``::

        outbox = PostgresOutbox()
        async with conn.transaction():             # asyncpg
            await conn.execute("INSERT INTO orders ...")
            await outbox.add(conn, Message.create(aggregate_type="order", ...))

        async with session.begin():                # SQLAlchemy AsyncSession
            session.add(order)
            await outbox.add(session, Message.create(aggregate_type="order", ...))

    Options left out (``schema``, ``table``, ``notify``, ``max_payload_bytes``) are read, at
    the first add, where the relay reads them: ``OUTBOXKIT_PG_*`` environment variables, then
    the ``[pg]`` table of ``outboxkit.toml`` (or ``OUTBOXKIT_CONFIG``), then the defaults
    (``public``, ``outbox``, notify on, 1 MiB). An option given here that disagrees with a
    configured one is a :class:`~outboxkit.errors.ConfigurationError` at the first add, and
    so is a configured ``mode = "wal"`` (use :class:`~outboxkit_postgres.PostgresWalOutbox`);
    ``read_config=False`` ignores the configuration.

    Writers of one aggregate are serialised by a transaction-scoped advisory lock on the
    aggregate's hash, so for one aggregate the sequence order equals the commit order.
    """

    _name = "PostgresOutbox"
    _other = "SyncPostgresOutbox"
    _of_other_mode = "PostgresWalOutbox"

    async def add(self, conn: Any, message: Message) -> None:
        """Add one message; it becomes visible to the relay iff the transaction commits."""
        await self.add_many(conn, (message,))

    async def add_many(self, conn: Any, messages: Sequence[Message]) -> None:
        """Add messages in one round trip, in order. Nothing is written if any is invalid.

        Raises :class:`~outboxkit.errors.InvalidMessageError` (bad message),
        :class:`~outboxkit.errors.TransactionRequiredError` (no transaction open),
        :class:`~outboxkit.errors.SchemaMissingError` (outbox not migrated) or
        :class:`UnsupportedConnectionError` (``conn`` is none of the accepted kinds).
        """
        await self._add_async(conn, messages)


class SyncPostgresOutbox(_Writer):
    """Adds messages to the outbox table in the caller's transaction (sync code).

    ``conn`` is a psycopg ``Connection``, an SQLAlchemy ``Session`` or ``Connection`` (psycopg
    driver), or a Django database connection (``django.db.connection``,
    ``django.db.connections["orders"]``) inside ``transaction.atomic()``::

        outbox = SyncPostgresOutbox()
        with transaction.atomic():                 # Django
            order = Order.objects.create(...)
            outbox.add(connection, Message.create(aggregate_type="order", ...))

        with session.begin():                      # SQLAlchemy Session
            session.add(order)
            outbox.add(session, Message.create(aggregate_type="order", ...))

    Options, configuration and guarantees as :class:`PostgresOutbox`.
    """

    _name = "SyncPostgresOutbox"
    _other = "PostgresOutbox"
    _of_other_mode = "SyncPostgresWalOutbox"

    def add(self, conn: Any, message: Message) -> None:
        """Add one message; it becomes visible to the relay iff the transaction commits."""
        self.add_many(conn, (message,))

    def add_many(self, conn: Any, messages: Sequence[Message]) -> None:
        """Add messages in one round trip, in order. Nothing is written if any is invalid.

        Raises the errors :meth:`PostgresOutbox.add_many` lists.
        """
        self._add_sync(conn, messages)
