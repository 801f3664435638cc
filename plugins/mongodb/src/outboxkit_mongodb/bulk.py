"""Bulk writes cut into commands small enough for FerretDB 1.x, and its write limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.operations import ReplaceOne, UpdateOne

__all__ = ["FERRETDB_STATEMENTS", "FERRETDB_WRITES", "bulk_write"]

FERRETDB_STATEMENTS = 1
"""Statements per write command on FerretDB 1.x. Its PostgreSQL backend holds one connection
of its pool (50 by default) per statement of an ``update`` command until the command ends, so
a command of more statements than the pool never ends, and concurrent ones can take the whole
pool between them while each waits for one more. One statement per command costs little
there: FerretDB spends ~6 ms on each update, a round trip ~0.3 ms."""

FERRETDB_WRITES = 16
"""Fenced writes (ack, retry, dead letter) one store runs at once on FerretDB 1.x, whatever
its shard workers: each holds at most two of FerretDB's pool connections, so three relay
processes stay within its default pool of 50."""


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
