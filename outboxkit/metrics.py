"""Counters a running relay exposes as ``relay.metrics``, and those of publishers."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from outboxkit.protocols import Delivered, Outcome

__all__ = ["PublisherStats", "RelayMetrics"]


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


class PublisherStats(msgspec.Struct, kw_only=True):
    """Cumulative counters of one publisher (``publisher.stats``), for plugins to share.

    :meth:`count` counts every outcome a publish call returns exactly once, as ``delivered``
    (``duplicates`` of them the broker already had), ``failed`` (non-retriable: the relay
    dead-letters them) or ``retriable_failures``. ``not_sent``, counted by the publisher,
    is the part of ``retriable_failures`` held back unsent because an earlier message of
    their aggregate failed. Plugins subclass it to add their own counters.
    """

    delivered: int = 0
    """Messages the broker acknowledged."""
    duplicates: int = 0
    """Of ``delivered``, those the broker already had."""
    failed: int = 0
    """Non-retriable failures (dead-lettered by the relay)."""
    retriable_failures: int = 0
    """Failures the relay retries with backoff."""
    not_sent: int = 0
    """Of ``retriable_failures``, those held back after an earlier failure of their aggregate."""

    def count(self, outcomes: Iterable[Outcome | None]) -> list[Outcome]:
        """Count ``outcomes`` (all filled in) and return them as a list."""
        result: list[Outcome] = []
        append = result.append
        delivered = duplicates = retriable = 0
        for outcome in outcomes:
            assert outcome is not None, "a message has no outcome"
            if isinstance(outcome, Delivered):
                delivered += 1
                duplicates += outcome.duplicate
            elif outcome.retriable:
                retriable += 1
            append(outcome)
        # added once per call, not per message (a struct attribute update costs more)
        self.delivered += delivered
        self.duplicates += duplicates
        self.retriable_failures += retriable
        self.failed += len(result) - delivered - retriable
        return result
