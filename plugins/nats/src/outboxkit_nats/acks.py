"""JetStream PubAcks of one connection, on one reply subscription.

A message is published with a reply subject ``<inbox>.<token>``; JetStream answers there with
its PubAck (or an API error, or a no-responders status when no stream captures the subject).
One wildcard subscription receives every answer and resolves the future of its token, so a
publish costs no request/reply round of its own and no task. (nats-py's
``publish_async()`` does the same, but loses API errors: its reply handler raises them instead
of failing the future, which then never completes.)
"""

from __future__ import annotations

import asyncio  # nats-py runs on asyncio; its callbacks resolve asyncio futures
from itertools import count

import msgspec
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Acks", "PubAck"]

_STATUS_HEADER = "Status"
_NO_RESPONDERS = "503"


class PubAck(msgspec.Struct):
    """A JetStream answer to a publish: the PubAck, or an API error."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, object] | None = None


_decode = msgspec.json.Decoder(PubAck).decode


def _api_error(error: dict[str, object]) -> Exception:
    """nats-py's exception for a JetStream API error (``APIError.from_error`` raises it)."""
    try:
        nats.js.errors.APIError.from_error(error)
    except nats.js.errors.APIError as exc:
        return exc
    return nats.js.errors.APIError(description=str(error))


class Acks:
    """The PubAck futures of a connection's publishes in flight."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._prefix = client.new_inbox() + "."
        self._tokens = count()
        self._futures: dict[str, asyncio.Future[PubAck]] = {}
        self._subscription: Subscription | None = None

    async def open(self) -> None:
        """Subscribe to the answers."""
        self._subscription = await self._client.subscribe(self._prefix + "*", cb=self._answer)

    @property
    def in_flight(self) -> int:
        """Publishes awaiting their answer."""
        return len(self._futures)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[str, asyncio.Future[PubAck]]:
        """Publish and return the token and future of the answer (raising what the
        connection raises when it refuses the message)."""
        token = str(next(self._tokens))
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        try:
            await self._client.publish(
                subject, payload, reply=self._prefix + token, headers=headers
            )
        except BaseException:
            del self._futures[token]
            raise
        return token, future

    def forget(self, token: str) -> None:
        """Stop waiting for an answer (timed out, or the call gave up)."""
        future = self._futures.pop(token, None)
        if future is not None:
            future.cancel()

    async def _answer(self, msg: Msg) -> None:
        future = self._futures.pop(msg.subject[len(self._prefix) :], None)
        if future is None or future.done():
            return  # forgotten meanwhile
        if msg.headers and msg.headers.get(_STATUS_HEADER) == _NO_RESPONDERS:
            future.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            ack = _decode(msg.data)
        except msgspec.DecodeError as exc:
            future.set_exception(exc)
            return
        if ack.error is not None:
            future.set_exception(_api_error(ack.error))
        else:
            future.set_result(ack)
