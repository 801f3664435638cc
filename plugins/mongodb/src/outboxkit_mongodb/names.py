"""Validated collection and field names, and the marker fields derived from the outbox field.

A document with pending messages carries, next to its outbox array ``<f>``:

* ``<f>_pending`` (true) and ``<f>_shard`` (int): the claim index keys;
* ``<f>_since``: earliest write time of its pending entries (claim order across documents);
* ``<f>_seq``: count of entries ever appended (written only by writers: change streams use it
  to tell writes from acks);
* ``<f>_due``, ``<f>_retry`` (message id -> failed attempts), ``<f>_error``: retry state;
* ``<f>_dead``: the ids of its entries that were dead-lettered and not yet replayed or
  discarded (absent when none): with ``on_dead_letter=block`` the claim skips the document.

All but ``<f>_seq`` and ``<f>_dead`` are removed when the array becomes empty, so the sparse
claim index holds only documents with pending entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from outboxkit.errors import ConfigurationError

__all__ = ["OutboxFields", "check_collection", "check_field"]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_COLLECTION = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,119}")


def check_field(value: str, what: str = "field name") -> str:
    """Return ``value`` if it is a plain top-level field name (no dots, no ``$``)."""
    if not isinstance(value, str) or not _FIELD.fullmatch(value):
        raise ConfigurationError(
            f"{what} {value!r} is not allowed: use letters, digits and '_', starting with a "
            "letter or '_', at most 64 characters"
        )
    return value


def check_collection(value: str, what: str = "collection name") -> str:
    """Return ``value`` if it is a plain collection name (not ``system.*``, no ``$``)."""
    if (
        not isinstance(value, str)
        or not _COLLECTION.fullmatch(value)
        or value.startswith("system.")
    ):
        raise ConfigurationError(
            f"{what} {value!r} is not allowed: use letters, digits, '_', '-' and '.', "
            "starting with a letter or '_', not 'system.*', at most 120 characters"
        )
    return value


@dataclass(frozen=True)
class OutboxFields:
    """The outbox array field and its marker fields."""

    array: str = "outbox"

    def __post_init__(self) -> None:
        check_field(self.array, "outbox field")

    @property
    def pending(self) -> str:
        return f"{self.array}_pending"

    @property
    def shard(self) -> str:
        return f"{self.array}_shard"

    @property
    def since(self) -> str:
        return f"{self.array}_since"

    @property
    def seq(self) -> str:
        return f"{self.array}_seq"

    @property
    def due(self) -> str:
        return f"{self.array}_due"

    @property
    def retry(self) -> str:
        return f"{self.array}_retry"

    @property
    def error(self) -> str:
        return f"{self.array}_error"

    @property
    def dead(self) -> str:
        return f"{self.array}_dead"

    @property
    def reserved(self) -> frozenset[str]:
        """Top-level fields only outboxkit may write."""
        return frozenset(
            {self.array, self.pending, self.shard, self.since, self.seq, self.due}
            | {self.retry, self.error, self.dead}
        )

    @property
    def cleared_when_empty(self) -> dict[str, str]:
        """``$unset`` spec removing the markers of a document whose outbox became empty."""
        names = (self.pending, self.shard, self.since, self.due, self.retry, self.error)
        return dict.fromkeys(names, "")

    @property
    def claim_index(self) -> list[tuple[str, int]]:
        """Keys of the sparse claim index: equality on shard and pending, sort on since."""
        return [(self.shard, 1), (self.pending, 1), (self.since, 1)]

    @property
    def claim_index_name(self) -> str:
        return f"outboxkit_{self.array}_claim"
