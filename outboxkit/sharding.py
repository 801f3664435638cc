"""Stable shard function and fair-share lease arithmetic."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "DEFAULT_SHARD_COUNT",
    "aggregate_hash",
    "fair_share",
    "known_shard_count",
    "shard_of",
]

DEFAULT_SHARD_COUNT = 64
"""The shard count of a server-backed store's schema unless its settings say otherwise."""


def aggregate_hash(aggregate_id: str) -> int:
    """A stable signed 64-bit hash of an aggregate id (BLAKE2b), equal in every process.

    Fits a Postgres ``bigint``, so it can key a transaction-scoped advisory lock.
    """
    digest = hashlib.blake2b(aggregate_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def shard_of(aggregate_id: str, shard_count: int) -> int:
    """The shard (``0 <= shard < shard_count``) that owns ``aggregate_id``."""
    if shard_count < 1:
        raise ValueError(f"shard_count must be >= 1, got {shard_count}")
    return aggregate_hash(aggregate_id) % shard_count


def known_shard_count(count: int | None, store: object) -> int:
    """A store's shard count ``count``, read by its ``open()`` or ``migrate()``; before that
    (``None``), a RuntimeError naming the store's class."""
    if count is None:
        raise RuntimeError(f"{type(store).__name__}.shard_count is known only after open()")
    return count


def fair_share(shard_count: int, instances: Sequence[str], me: str) -> int:
    """How many shards ``me`` should hold when ``instances`` (live, including me) split them.

    Instances are ranked by name so every instance computes the same split; the first
    ``shard_count % n`` instances take one shard more.
    """
    ranked = sorted(set(instances) | {me})
    n = len(ranked)
    base, extra = divmod(shard_count, n)
    return base + (1 if ranked.index(me) < extra else 0)
