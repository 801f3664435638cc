"""Validated SQL names of one outbox (schema, tables, notification channel) and SQL rendering."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from outboxkit.sql_names import check_identifier

__all__ = ["OutboxNames", "query_texts"]


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

    def render(self, sql: str, **extra: str) -> str:
        """Replace ``{{schema}}``, ``{{table}}``, ``{{channel}}`` and ``extra`` tokens."""
        tokens = {"schema": self.schema, "table": self.table, "channel": self.channel, **extra}
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
