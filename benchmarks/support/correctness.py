"""Correctness of a delivery: lost, duplicated and out-of-order messages."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from outboxkit.message import Message

__all__ = ["Correctness", "Tally"]


class Correctness(msgspec.Struct, kw_only=True):
    """What an independent consumer saw of one scenario step.

    ``order_violations`` counts first deliveries of an aggregate that arrived after a first
    delivery with a higher ``bench-seq`` of the same aggregate; ``duplicates`` counts
    deliveries of an id already seen; ``unexpected`` counts ids that were never written.
    """

    scenario: str
    step: str
    expected: int
    received: int
    lost: int
    duplicates: int
    order_violations: int
    unexpected: int

    @property
    def failed(self) -> bool:
        """Lost, reordered or foreign messages (duplicates are counted, not failures)."""
        return bool(self.lost or self.order_violations or self.unexpected)


class Tally:
    """Counts deliveries against the messages that were written."""

    def __init__(self, expected: Iterable[Message] = ()) -> None:
        self.expected: set[str] = {str(m.id) for m in expected}
        self._seen: set[str] = set()
        self._last_seq: dict[str, int] = {}
        self.received = 0
        self.duplicates = 0
        self.order_violations = 0

    def expect(self, message: Message) -> None:
        """Add a message written after the tally was created."""
        self.expected.add(str(message.id))

    @property
    def unique(self) -> int:
        return len(self._seen)

    def record(self, message_id: str, aggregate: str, seq: int) -> bool:
        """Count one delivery; True if it is the first delivery of ``message_id``."""
        self.received += 1
        if message_id in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(message_id)
        last = self._last_seq.get(aggregate, -1)
        if seq < last:
            self.order_violations += 1
        else:
            self._last_seq[aggregate] = seq
        return True

    def complete(self) -> bool:
        return self.expected <= self._seen

    def result(self, scenario: str, step: str) -> Correctness:
        return Correctness(
            scenario=scenario,
            step=step,
            expected=len(self.expected),
            received=self.received,
            lost=len(self.expected - self._seen),
            duplicates=self.duplicates,
            order_violations=self.order_violations,
            unexpected=len(self._seen - self.expected),
        )
