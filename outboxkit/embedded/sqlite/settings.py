"""Settings of the embedded SQLite store (``--store sqlite``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["SqliteSettings"]


class SqliteSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where the SQLite outbox lives and how it is sharded."""

    path: Annotated[str, msgspec.Meta(description="SQLite database file of the outbox")] = (
        "outbox.db"
    )
    shard_count: Annotated[
        int,
        msgspec.Meta(ge=1, description="number of shards, fixed when `migrate` creates the schema"),
    ] = 8
    table: Annotated[
        str, msgspec.Meta(description="outbox table name (also prefixes its helper tables)")
    ] = "outbox"
