"""The inbox contract: verdicts, the per-aggregate guard, the plugin registration.

An inbox records the id of every message a consumer applied, in the consumer's own database
and in the same transaction (or single-document write) as the state change, so:

* a message delivered again (the broker redelivers, the relay re-sends) is a *duplicate*:
  its id is there, the state change is skipped;
* two consumers racing on one message: the id is a unique key, so exactly one transaction
  records it and applies the change; the other waits for it and sees a duplicate (or applies
  it, if the first rolled back);
* a crash after the commit but before the broker's offset commit or ack: the message comes
  again and is a duplicate; a crash before the commit: nothing was applied, and it comes again.

With the *guard* on, the inbox also keeps the last applied sequence number of each aggregate
(the ``outboxkit-sequence`` header, see :class:`~outboxkit.inbox.decoding.InboxMessage`): a
message of an aggregate with a number not above it is *stale* (an old event re-sent after
newer ones, or a duplicate whose id was already pruned), and is skipped or parked.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import msgspec

__all__ = [
    "INBOX_GROUP",
    "INBOX_TABLES",
    "Guard",
    "InboxOperations",
    "InboxPlugin",
    "Verdict",
]

INBOX_GROUP = "outboxkit.inboxes"
"""Entry-point group of the inbox plugins (``outboxkit inbox ... --inbox NAME``)."""

INBOX_TABLES = (("processed", ""), ("aggregates", "_aggregates"), ("parked", "_parked"))
"""(what ``outboxkit inbox status`` calls it, suffix of its table's name) of the SQL inboxes."""

Guard = Literal["off", "skip", "park"]
"""The per-aggregate guard: ``off`` (ids only), ``skip`` a stale message, or ``park`` it in
the inbox's parked table for a person to look at (``outboxkit inbox parked``)."""

SettingsT = TypeVar("SettingsT", bound=msgspec.Struct)


class Verdict(enum.Enum):
    """What the inbox decided about a message. Only :attr:`FRESH` is true, so
    ``async with inbox.process(conn, message) as fresh: if fresh: ...`` reads naturally."""

    FRESH = "fresh"
    """Not seen before: apply it (its id is recorded with your change)."""
    DUPLICATE = "duplicate"
    """Its id is recorded: it was applied before (or is being applied by another consumer
    that committed first)."""
    STALE = "stale"
    """The guard skipped it: its aggregate already has a later message applied."""
    PARKED = "parked"
    """The guard parked it: like stale, and a copy is kept in the parked table."""

    def __bool__(self) -> bool:
        return self is Verdict.FRESH


@runtime_checkable
class InboxOperations(Protocol):
    """What the ``outboxkit inbox`` commands need from an inbox plugin's operations object."""

    async def open(self) -> None:
        """Connect (the schema need not exist for :meth:`migrate`)."""

    async def close(self) -> None:
        """Disconnect. Idempotent."""

    async def migrate(self) -> None:
        """Create the inbox tables (collections, indexes) if missing; re-runnable."""

    async def prune(self, older_than: float, batch_size: int) -> int:
        """Remove the ids of messages written more than ``older_than`` seconds ago (the time
        in their UUIDv7 ids), at most ``batch_size`` per statement (so no delete holds many
        locks or a long transaction); return how many were removed."""
        ...

    async def counts(self) -> dict[str, int]:
        """Processed ids, guarded aggregates and parked messages kept now."""
        ...


@dataclass(frozen=True)
class InboxPlugin(Generic[SettingsT]):
    """What an inbox plugin registers under ``outboxkit.inboxes``: a settings struct (its CLI
    options are derived from it, like a store's) and a factory of its operations object."""

    name: str
    """The name given to ``--inbox``."""
    settings_type: type[SettingsT]
    """Its settings struct (options under the section ``<name>-inbox``)."""
    create: Callable[[SettingsT], Any]
    """Makes its :class:`InboxOperations` from the settings."""
    summary: str = ""
    """One line for ``outboxkit plugins``."""
