"""Validated SQL names of one outbox (schema, tables, notification channel) and SQL rendering.

Every name reaches SQL quoted (``"user"."outbox_dead"``), so reserved words work as schema and
table names; :func:`~outboxkit.sql_names.check_identifier` still refuses anything that is
not a plain lower-case name, so quoting never changes what a name means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from outboxkit.sql_names import check_identifier, quote_identifier

__all__ = ["MIGRATION_LOCK", "WRITER_LOCK_CLASS", "OutboxNames", "query_texts"]

WRITER_LOCK_CLASS = 0x6F62786B
"""First key (``'obxk'``, 1868724331) of the writers' transaction-scoped advisory locks,
``pg_advisory_xact_lock(WRITER_LOCK_CLASS, <high 32 bits of the aggregate hash>)``. Two-key
advisory locks never collide with one-key (bigint) ones, nor with two-key locks whose first
key differs, so applications keep the rest of the advisory-lock space to themselves."""

MIGRATION_LOCK = (0x6F62786D, 0)
"""``pg_advisory_lock(1868724333, 0)`` (``'obxm'``): serialises concurrent ``migrate`` runs."""

_TABLE_TOKEN = re.compile(r"\{\{table\}\}(\w*)")
"""``{{table}}`` and a suffix glued to it (``{{table}}_dead``): one name, quoted as a whole."""


@dataclass(frozen=True)
class OutboxNames:
    """Names derived from a validated schema and table; only these reach SQL text."""

    schema: str
    table: str

    def __post_init__(self) -> None:
        check_identifier(self.schema, "schema name")
        check_identifier(self.table, "table name")

    @property
    def qualified(self) -> str:
        """``schema.table`` as shown to people."""
        return f"{self.schema}.{self.table}"

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this outbox."""
        return f"outboxkit_{self.schema}_{self.table}"[:63]

    @property
    def wal_prefix(self) -> str:
        """The prefix of this outbox's logical decoding messages (WAL-only mode)."""
        return f"outboxkit:{self.schema}.{self.table}"

    @property
    def slot(self) -> str:
        """The default replication slot (and publication) name of this outbox."""
        return f"outboxkit_{self.schema}_{self.table}"[:63]

    def render(self, sql: str, **extra: str) -> str:
        """Replace ``{{schema}}``, ``{{table}}[suffix]``, ``{{channel}}`` and ``extra`` tokens.

        ``{{schema}}`` and ``{{table}}_suffix`` become quoted identifiers; ``{{channel}}``
        (used inside a string literal), ``{{writer_lock}}`` (:data:`WRITER_LOCK_CLASS`) and
        ``extra`` tokens are replaced as they are.
        """
        sql = sql.replace("{{schema}}", quote_identifier(self.schema))
        sql = _TABLE_TOKEN.sub(lambda m: quote_identifier(self.table + m.group(1)), sql)
        tokens = {"channel": self.channel, "writer_lock": str(WRITER_LOCK_CLASS), **extra}
        for name, value in tokens.items():
            sql = sql.replace("{{" + name + "}}", value)
        return sql


FRAGMENTS = ("fence", "held_leases")
"""Sections of ``queries.sql`` pasted into the queries that name them, not queries."""


@cache
def query_texts() -> dict[str, str]:
    """The named queries of ``sql/queries.sql`` (``-- name: x`` sections), unrendered."""
    text = files("outboxkit_postgres").joinpath("sql/queries.sql").read_text("utf-8")
    queries: dict[str, str] = {}
    for chunk in text.split("-- name: ")[1:]:
        name, _, body = chunk.partition("\n")
        queries[name.strip()] = body.strip()
    fragments = {name: queries.pop(name) for name in FRAGMENTS}
    for name, body in queries.items():
        for fragment, text in fragments.items():
            body = body.replace("{{" + fragment + "}}", text)
        queries[name] = body
    return queries
