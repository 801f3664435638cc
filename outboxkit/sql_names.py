"""Validation and quoting of SQL identifiers (table and schema names) that come from settings."""

from __future__ import annotations

import re

from outboxkit.errors import ConfigurationError

__all__ = ["check_identifier", "quote_identifier"]

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def check_identifier(value: str, what: str = "identifier") -> str:
    """Return ``value`` if it is a plain lower-case SQL identifier, else raise.

    Only ``[a-z_][a-z0-9_]*`` up to 48 characters is accepted, so derived names
    (``<table>_dead``) stay under PostgreSQL's 63-byte limit and the name means the same
    quoted or not. Reserved words (``user``, ``order``) are fine: names reach SQL quoted
    (:func:`quote_identifier`).
    """
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise ConfigurationError(
            f"{what} {value!r} is not allowed: use lower-case letters, digits and '_', "
            "starting with a letter or '_', at most 48 characters"
        )
    return value


def quote_identifier(value: str) -> str:
    """``value`` as a double-quoted SQL identifier (PostgreSQL and SQLite syntax)."""
    return '"' + value.replace('"', '""') + '"'
