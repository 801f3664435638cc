"""Counters a running relay exposes as ``relay.metrics``."""

from __future__ import annotations

import msgspec

__all__ = ["RelayMetrics"]


class RelayMetrics(msgspec.Struct, kw_only=True):
    """Cumulative counters of one relay instance (encode with ``msgspec.json.encode``).

    ``published`` counts acknowledged messages (``duplicates`` of them the broker already
    had); ``retried`` and ``dead_lettered`` count messages handed back to the store;
    ``lease_lost`` counts shards taken away while held; ``batches`` counts publish calls;
    ``owned_shards`` is the number of shards worked on now; ``last_publish_lag`` is the age in
    seconds (``now - created_at``) of the last published message when it was acknowledged.
    """

    published: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    lease_lost: int = 0
    batches: int = 0
    owned_shards: int = 0
    last_publish_lag: float | None = None
