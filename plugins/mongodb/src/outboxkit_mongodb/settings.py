"""Settings of the ``mongodb`` store (CLI ``--mongodb-*``, env ``OUTBOXKIT_MONGODB_*``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from outboxkit.sharding import DEFAULT_SHARD_COUNT

__all__ = ["MongoSettings"]


class MongoSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where the embedded outboxes live and how the relay watches them."""

    url: Annotated[
        str,
        msgspec.Meta(
            description="MongoDB connection string (mongodb:// or mongodb+srv://)",
            extra={"secret": True},
        ),
    ] = "mongodb://127.0.0.1:27017"
    database: Annotated[
        str, msgspec.Meta(description="database holding the aggregate collections")
    ] = "outboxkit"
    collections: Annotated[
        list[str],
        msgspec.Meta(description="aggregate collections the relay serves, e.g. orders,customers"),
    ] = msgspec.field(default_factory=list)
    outbox_field: Annotated[
        str,
        msgspec.Meta(description="array field holding each document's outbox (markers: <field>_*)"),
    ] = "outbox"
    aggregate_field: Annotated[
        str,
        msgspec.Meta(description="field whose value (as str) is the aggregate id; must be unique"),
    ] = "_id"
    shard_count: Annotated[
        int, msgspec.Meta(ge=1, description="number of shards, fixed when migrate first runs")
    ] = DEFAULT_SHARD_COUNT
    poll_interval: Annotated[
        float,
        msgspec.Meta(gt=0, description="seconds between polls when change streams are not used"),
    ] = 1.0
    change_streams: Annotated[
        Literal["auto", "on", "off"],
        msgspec.Meta(description="wake the relay by change streams: auto (if supported), on, off"),
    ] = "auto"
    collection_prefix: Annotated[
        str,
        msgspec.Meta(description="prefix of the leases, instances, dead_letters, meta collections"),
    ] = "outboxkit_"
    server_selection_timeout: Annotated[
        float, msgspec.Meta(gt=0, description="seconds to wait for a reachable server")
    ] = 10.0
