"""Bulk writes cut into commands small enough for FerretDB 1.x."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.operations import ReplaceOne, UpdateOne

__all__ = ["FERRETDB_STATEMENTS", "bulk_write"]

FERRETDB_STATEMENTS = 4
"""Statements per write command on FerretDB 1.x. Its PostgreSQL backend holds one connection
of its pool (50 by default) per statement of an ``update`` command until the command ends, so
a command of more statements than the pool never ends, and concurrent ones (one per shard
worker of every relay) can take the whole pool between them: small commands keep that far."""


async def bulk_write(
    coll: AsyncCollection[Any],
    ops: Sequence[UpdateOne | ReplaceOne[Any]],
    *,
    per_command: int | None,
    session: AsyncClientSession | None = None,
) -> int:
    """``coll.bulk_write(ops, ordered=False)`` in commands of at most ``per_command``
    statements (one command when None), one after another; the documents matched."""
    size = per_command or max(1, len(ops))
    matched = 0
    for first in range(0, len(ops), size):
        result = await coll.bulk_write(ops[first : first + size], ordered=False, session=session)
        matched += result.matched_count
    return matched
