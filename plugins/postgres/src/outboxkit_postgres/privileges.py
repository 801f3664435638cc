"""The privileges each role needs on an outbox, checked up front, and errors that name them.

docs/operations.md ("Least privileges") shows the grants. ``migrate`` needs CREATE on the
database (or on an existing schema); the relay (and the ``status`` / ``dead-letters``
commands) needs :data:`RELAY` on the outbox tables; writers need :data:`WRITER`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import asyncpg

from outboxkit.errors import ConfigurationError
from outboxkit_postgres.names import OutboxNames

__all__ = ["RELAY", "WRITER", "check_relay", "migrate_denied", "writer_denied"]

RELAY: Mapping[str, tuple[str, ...]] = {
    "": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "_dead": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "_leases": ("SELECT", "INSERT", "UPDATE"),
    "_instances": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "_meta": ("SELECT",),
}
"""Table suffix -> privileges the relay role needs on ``<table><suffix>``."""

WRITER: Mapping[str, tuple[str, ...]] = {"": ("INSERT",), "_meta": ("SELECT",)}
"""Table suffix -> privileges a writer's role needs (plus USAGE on the schema)."""

GUIDE = "docs/operations.md, 'Least privileges'"

_DENIED = re.compile(r"permission denied for (table|schema|function) (\S+)")

_RELAY_CHECK = """
SELECT current_user::text AS role,
       (SELECT has_schema_privilege(n.oid, 'USAGE') FROM pg_namespace AS n
        WHERE n.nspname = $1) AS usage,
       ARRAY(SELECT r.priv || ' on ' || $1 || '.' || r.rel
             FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS r(rel, priv, i)
             JOIN pg_namespace AS n ON n.nspname = $1
             JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = r.rel
             WHERE NOT has_table_privilege(c.oid, r.priv)
             ORDER BY r.i) AS missing
"""


def _grants(names: OutboxNames, wanted: Mapping[str, tuple[str, ...]]) -> str:
    return "; ".join(
        f"{', '.join(privs)} on {names.qualified}{sfx}" for sfx, privs in wanted.items()
    )


async def check_relay(conn: asyncpg.Connection, names: OutboxNames) -> None:
    """Raise :class:`ConfigurationError` naming every privilege the relay lacks.

    Tables that do not exist are skipped: the schema version check reports them.
    """
    pairs = [(names.table + sfx, priv) for sfx, privs in RELAY.items() for priv in privs]
    row = await conn.fetchrow(
        _RELAY_CHECK, names.schema, [rel for rel, _ in pairs], [priv for _, priv in pairs]
    )
    assert row is not None
    missing = [] if row["usage"] in (True, None) else [f"USAGE on schema {names.schema}"]
    missing += row["missing"]
    if missing:
        raise ConfigurationError(
            f"role {row['role']!r} lacks privileges the relay needs on outbox "
            f"{names.qualified}: {', '.join(missing)}; grant them ({GUIDE})"
        )


def writer_denied(exc: BaseException, names: OutboxNames) -> ConfigurationError:
    """The error of a writer whose role lacks a privilege (its transaction is aborted)."""
    reason = str(exc.args[0]) if exc.args else "permission denied"
    refused = _DENIED.search(reason)
    kind, name = refused.groups() if refused else ("", "")
    if kind == "schema":
        needed = f"USAGE on schema {names.schema}"
    elif kind == "function":
        needed = f"EXECUTE on function {names.qualified}_add"
    elif kind == "table" and name.startswith(names.table):
        privileges = WRITER.get(name[len(names.table) :], ("INSERT",))
        needed = f"{', '.join(privileges)} on {names.schema}.{name}"
    else:
        needed = f"USAGE on schema {names.schema}; {_grants(names, WRITER)}"
    return ConfigurationError(f"the writer's role lacks {needed} ({reason}): grant it ({GUIDE})")


def migrate_denied(
    exc: asyncpg.InsufficientPrivilegeError, names: OutboxNames, role: str
) -> ConfigurationError:
    """The error of a ``migrate`` refused by the server; nothing was changed (one transaction)."""
    return ConfigurationError(
        f"role {role!r} may not migrate outbox {names.qualified} ({exc.args[0]}); nothing was "
        f"changed: run migrate as the role that owns the outbox tables, with CREATE on schema "
        f"{names.schema} (or on the database if the schema does not exist yet) ({GUIDE})"
    )
