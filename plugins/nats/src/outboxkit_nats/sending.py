"""One publish call to JetStream: every aggregate's messages one after the other, the
aggregates side by side.

Messages leave through :class:`~outboxkit_nats.acks.Acks` (one reply subscription per
connection resolves their PubAck futures), at most ``max_in_flight`` of them awaiting a PubAck
at once over every call of the publisher. A call sends the first message of every aggregate
while that allows; when one is acknowledged, the next of its aggregate may leave, so at most
one message per aggregate awaits its PubAck at any time. Once a message of an aggregate
fails, the later ones of that aggregate are not sent.

A message without a PubAck ``timeout`` seconds after it left fails (retriable). A message
waits for room at most ``timeout`` seconds (room taken by other calls), then fails
(retriable).
"""

from __future__ import annotations

import asyncio  # nats-py runs on asyncio: PubAck futures are asyncio futures
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import anyio
from nats.errors import TimeoutError as PubAckTimeout

from outboxkit.errors import InvalidMessageError
from outboxkit.message import Message
from outboxkit.protocols import Delivered, Failed, Outcome, not_sent
from outboxkit_nats.acks import Acks, PubAck
from outboxkit_nats.settings import NatsSettings

__all__ = ["Sending"]

DELIVERED = Delivered()
DUPLICATE = Delivered(duplicate=True)
ROOM_POLL = 0.005
"""Seconds between looks for room that other calls hold."""

Prepare = Callable[[Message], tuple[str, dict[str, str]]]
Failure = Callable[[BaseException, str], Awaitable[Failed]]
"""The failure of a message to a subject that raised, or was answered with, an error."""


class _InFlight(NamedTuple):
    """A message awaiting its PubAck."""

    token: str
    future: asyncio.Future[PubAck]
    subject: str
    sent: float
    queue: deque[int]
    """Its aggregate's indices still to send."""


class Sending:
    """The outcomes of one call, filled in as its messages are acknowledged (module docs)."""

    def __init__(
        self, acks: Acks, settings: NatsSettings, prepare: Prepare, failure: Failure
    ) -> None:
        self._acks = acks
        self._slots, self._timeout = settings.max_in_flight, settings.publish_timeout
        self._prepare, self._failure = prepare, failure
        self.acknowledged: set[str] = set()
        """Subjects that took a message."""
        self.held_back = 0
        """Messages not sent because an earlier one of their aggregate failed."""
        self._messages: Sequence[Message] = ()
        self._outcomes: list[Outcome | None] = []
        self._ready: deque[deque[int]] = deque()
        """Aggregates (their indices still to send) whose next message may leave."""
        self._pending: dict[int, _InFlight] = {}
        """Index -> the message in flight, oldest first."""
        self._done: deque[int] = deque()
        self._wake: asyncio.Future[None] | None = None

    async def run(self, messages: Sequence[Message]) -> list[Outcome | None]:
        """Send ``messages`` (module docs); one outcome each, in order."""
        self._messages, self._outcomes = messages, [None] * len(messages)
        by_aggregate: dict[str, deque[int]] = {}
        for index, message in enumerate(messages):
            by_aggregate.setdefault(message.aggregate_id, deque()).append(index)
        self._ready.extend(by_aggregate.values())
        stalled_since: float | None = None
        try:
            while self._ready or self._pending or self._done:
                while self._done:
                    await self._settle(self._done.popleft())
                while self._ready and self._acks.in_flight < self._slots:
                    await self._send(self._ready.popleft())
                if self._pending:
                    stalled_since = None
                    await self._wait()
                elif self._ready:  # other calls fill max_in_flight
                    now = anyio.current_time()
                    stalled_since = now if stalled_since is None else stalled_since
                    if now - stalled_since < self._timeout:
                        await anyio.sleep(ROOM_POLL)
                    else:
                        self._stalled()
        finally:
            for waiting in self._pending.values():
                self._acks.forget(waiting.token)  # the relay publishes the message again
        return self._outcomes

    async def _send(self, queue: deque[int]) -> None:
        """Send the next message of an aggregate (its indices still to send: ``queue``)."""
        index = queue.popleft()
        message = self._messages[index]
        try:
            subject, headers = self._prepare(message)
        except InvalidMessageError as exc:
            self._fail(index, Failed(str(exc), retriable=False), queue)
            return
        try:
            token, future = await self._acks.publish(subject, message.payload, headers)
        except Exception as exc:
            self._fail(index, await self._failure(exc, subject), queue)
            return
        self._pending[index] = _InFlight(token, future, subject, anyio.current_time(), queue)
        future.add_done_callback(partial(self._acknowledged, index))

    def _acknowledged(self, index: int, _future: asyncio.Future[Any]) -> None:
        self._done.append(index)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _wait(self) -> None:
        """Wait for a PubAck, or time out the oldest message in flight."""
        index, oldest = next(iter(self._pending.items()))
        left = oldest.sent + self._timeout - anyio.current_time()
        if left > 0:
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait((self._wake,), timeout=left)
            finally:
                self._wake = None
            return
        del self._pending[index]
        self._acks.forget(oldest.token)  # its callback finds it settled
        self._fail(index, await self._failure(PubAckTimeout(), oldest.subject), oldest.queue)

    def _stalled(self) -> None:
        """No room within ``timeout``: the waiting aggregates fail (retriable)."""
        failure = Failed(
            f"{self._slots} publishes (max_in_flight) awaited their PubAck for "
            f"{self._timeout:g}s; the message will be published again",
            retriable=True,
        )
        while self._ready:
            queue = self._ready.popleft()
            self._fail(queue.popleft(), failure, queue)

    async def _settle(self, index: int) -> None:
        done = self._pending.pop(index, None)
        if done is None:
            return  # timed out and settled already
        future = done.future
        error = PubAckTimeout() if future.cancelled() else future.exception()
        if error is not None:
            self._fail(index, await self._failure(error, done.subject), done.queue)
            return
        self._outcomes[index] = DUPLICATE if future.result().duplicate else DELIVERED
        self.acknowledged.add(done.subject)
        if done.queue:
            self._ready.append(done.queue)

    def _fail(self, index: int, failure: Failed, queue: deque[int]) -> None:
        """Message ``index`` failed: its aggregate's later messages are not sent."""
        self._outcomes[index] = failure
        held = not_sent(self._messages[index])
        for later in queue:
            self._outcomes[later] = held
        self.held_back += len(queue)
        queue.clear()
