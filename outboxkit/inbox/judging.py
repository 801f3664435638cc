"""The inbox's decision for a batch of messages, once the database said which ids are new and
what each aggregate's last applied sequence number is (shared by the SQL inboxes)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from outboxkit.inbox.contract import Guard, Verdict
from outboxkit.inbox.decoding import InboxMessage

__all__ = ["AggregateKey", "Judgement", "aggregate_keys", "judge"]

AggregateKey = tuple[str, str]
"""(aggregate type, aggregate id): the guard's key."""

NONE_APPLIED = 0
"""The last sequence of an aggregate nothing was applied of (sequences start at 1)."""


@dataclass
class Judgement:
    """Verdicts in message order, and the aggregates' new last sequence numbers."""

    verdicts: list[Verdict] = field(default_factory=list)
    last: dict[AggregateKey, int] = field(default_factory=dict)
    """Aggregates whose last applied sequence grows (to be written)."""
    behind: dict[UUID, int] = field(default_factory=dict)
    """For each stale (or parked) message, the last applied sequence it is behind."""

    def fresh(self, messages: Sequence[InboxMessage]) -> list[InboxMessage]:
        """The messages to apply, in order."""
        return [m for m, v in zip(messages, self.verdicts, strict=True) if v is Verdict.FRESH]

    def parked(self, messages: Sequence[InboxMessage]) -> list[InboxMessage]:
        """The messages to park, in order."""
        return [m for m, v in zip(messages, self.verdicts, strict=True) if v is Verdict.PARKED]


def aggregate_keys(
    messages: Sequence[InboxMessage], new_ids: Collection[UUID]
) -> set[AggregateKey]:
    """The aggregates of the new messages that carry a sequence number: those the guard reads."""
    return {
        (m.aggregate_type, m.aggregate_id)
        for m in messages
        if m.sequence is not None and m.id in new_ids
    }


def judge(
    messages: Sequence[InboxMessage],
    new_ids: Collection[UUID],
    last: Mapping[AggregateKey, int],
    guard: Guard,
) -> Judgement:
    """Decide each message: a duplicate if its id was not new (or came earlier in the batch);
    with the guard on, stale (or parked) if its aggregate's last applied sequence (``last``,
    then the earlier messages of the batch) is not below its own. A message without a
    sequence number passes the guard."""
    judgement = Judgement()
    seen: set[UUID] = set()
    current = dict(last)
    stale = Verdict.PARKED if guard == "park" else Verdict.STALE
    for message in messages:
        if message.id in seen or message.id not in new_ids:
            judgement.verdicts.append(Verdict.DUPLICATE)
            continue
        seen.add(message.id)
        if guard == "off" or message.sequence is None:
            judgement.verdicts.append(Verdict.FRESH)
            continue
        key = (message.aggregate_type, message.aggregate_id)
        if message.sequence <= current.get(key, NONE_APPLIED):
            judgement.behind[message.id] = current[key]
            judgement.verdicts.append(stale)
            continue
        current[key] = judgement.last[key] = message.sequence
        judgement.verdicts.append(Verdict.FRESH)
    return judgement
