"""Acknowledging a batch's delivered messages in the store while the rest is in flight.

With a publisher that reports deliveries as the broker acknowledges them
(:class:`outboxkit.protocols.ReportsDeliveries`), the relay does not wait for the whole call:
:class:`EarlyAcks` acks, in the background, each aggregate's *delivered prefix* — its messages
of the batch up to the first one not reported delivered yet. A message after one that failed
or is still in flight is never acked early, so the settle rules hold (:func:`settle`, which
still settles the whole batch when the call returns, acks only what is left). One ack call is
in flight at a time; it takes whatever arrived since the previous one.

Early acks are best effort: the first one that fails stops them, and what it held is acked
with the rest when the call returns (acking a message twice is harmless).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from outboxkit.protocols import Delivered, Envelope, Outcome

__all__ = ["EarlyAcks"]

_DELIVERED = Delivered()


class EarlyAcks:
    """The early acks of one claimed batch (module docs); ``ack`` is the store call, fenced
    and bounded by the caller."""

    def __init__(
        self, envelopes: Sequence[Envelope], ack: Callable[[list[Envelope]], Awaitable[None]]
    ) -> None:
        self._envelopes = envelopes
        self._ack = ack
        self.reported = [False] * len(envelopes)
        """Whether each message was reported delivered."""
        self.acked = [False] * len(envelopes)
        """Whether each message was acked early."""
        self._members: dict[str, list[int]] = {}
        """Aggregate id -> its indices in the batch, in order."""
        for index, envelope in enumerate(envelopes):
            self._members.setdefault(envelope.message.aggregate_id, []).append(index)
        self._prefix: dict[str, int] = dict.fromkeys(self._members, 0)
        """Aggregate id -> how many of its messages are in its delivered prefix."""
        self._ready: list[int] = []
        self._changed = anyio.Event()
        self._closing = False

    def delivered(self, indices: Sequence[int]) -> None:
        """The publisher's report: messages ``indices`` were acknowledged by the broker."""
        touched: set[str] = set()
        for index in indices:
            self.reported[index] = True
            touched.add(self._envelopes[index].message.aggregate_id)
        for aggregate in touched:
            members, start = self._members[aggregate], self._prefix[aggregate]
            end = start
            while end < len(members) and self.reported[members[end]]:
                end += 1
            if end > start:
                self._prefix[aggregate] = end
                self._ready.extend(members[start:end])
                self._changed.set()

    async def run(self) -> None:
        """Ack the delivered prefixes as they grow, one call at a time, until :meth:`close`."""
        while True:
            await self._changed.wait()
            if self._closing:
                return
            self._changed = anyio.Event()
            ready, self._ready = sorted(self._ready), []
            try:
                await self._ack([self._envelopes[i] for i in ready])
            except Exception:
                return  # left to the settlement of the whole batch (module docs)
            for index in ready:
                self.acked[index] = True

    def final(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """The call's ``outcomes``, with every message reported delivered ``Delivered``
        whatever the call ended with (e.g. a publisher that raised after some deliveries)."""
        return [
            _DELIVERED if reported and not isinstance(outcome, Delivered) else outcome
            for reported, outcome in zip(self.reported, outcomes, strict=True)
        ]

    def not_acked(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """``envelopes`` without those acked early."""
        done = {e.position for e, acked in zip(self._envelopes, self.acked, strict=True) if acked}
        return [e for e in envelopes if e.position not in done] if done else list(envelopes)

    def close(self) -> None:
        """Start no more ack calls (the one in flight, if any, completes)."""
        self._closing = True
        self._changed.set()
