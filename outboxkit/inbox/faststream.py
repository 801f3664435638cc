"""A FastStream middleware that applies an inbox to the subscribers it wraps.

Install the extra: ``pip install 'outboxkit[faststream]'``. With asyncpg and the Postgres
inbox::

    inbox = PostgresInbox(guard="skip")
    broker = KafkaBroker(
        "localhost:9092",
        middlewares=[InboxMiddleware(connect=lambda: pool.acquire(), process=inbox.process)],
    )

    @broker.subscriber("orders", group_id="billing", ack_policy=AckPolicy.ACK)
    async def on_order(body: dict, conn=Context(CONNECTION), message=Context(MESSAGE)):
        await conn.execute("UPDATE ...")        # inside the inbox's transaction

For each message the middleware decodes the outboxkit headers (an
:class:`~outboxkit.inbox.UnreadableMessageError` goes to FastStream's error handling, and the
handler is not called), takes a connection from ``connect()``, and enters
``process(conn, message)``: the handler runs only for a fresh message, with the connection
and the :class:`~outboxkit.inbox.InboxMessage` in FastStream's context; its change commits
with the message id, or an exception rolls both back (and FastStream nacks or logs it as
configured). A duplicate or stale message is acknowledged without calling the handler.

Without ``connect``/``process`` it only decodes: the handler gets the message in the context
and applies the inbox itself (e.g. ``MongoInbox.update_one``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

from faststream import BaseMiddleware

from outboxkit.inbox.contract import Verdict
from outboxkit.inbox.decoding import InboxMessage, decode, record_origin

__all__ = ["CONNECTION", "MESSAGE", "InboxMiddleware"]

CONNECTION = "outboxkit_connection"
"""FastStream context key of the connection the inbox transaction runs on."""
MESSAGE = "outboxkit_message"
"""FastStream context key of the decoded :class:`~outboxkit.inbox.InboxMessage`."""

Process = Callable[[Any, InboxMessage], AbstractAsyncContextManager[Verdict]]


class InboxMiddleware:
    """A FastStream broker middleware (see the module docs): pass an instance in the
    broker's (or a subscriber's) ``middlewares``."""

    def __init__(
        self,
        *,
        connect: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
        process: Process | None = None,
    ) -> None:
        if (connect is None) != (process is None):
            raise TypeError("pass both connect and process, or neither (decode only)")
        self.connect = connect
        """Gives a connection per message (e.g. ``pool.acquire``), or None."""
        self.process = process
        """The inbox's ``process(conn, message)``, or None."""

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware[Any, Any]:
        return _Applied(msg, context=context, inbox=self)


class _Applied(BaseMiddleware[Any, Any]):
    def __init__(self, msg: Any, /, *, context: Any, inbox: InboxMiddleware) -> None:
        super().__init__(msg, context=context)
        self.inbox = inbox

    async def consume_scope(self, call_next: Callable[[Any], Any], msg: Any) -> Any:
        topic, source = record_origin(getattr(msg, "raw_message", None))
        message = decode(msg.headers, msg.body, topic=topic, source=source)
        connect, process = self.inbox.connect, self.inbox.process
        async with AsyncExitStack() as stack:
            stack.enter_context(self.context.scope(MESSAGE, message))
            if connect is not None and process is not None:
                conn = await stack.enter_async_context(connect())
                verdict = await stack.enter_async_context(process(conn, message))
                if not verdict:
                    return None
                stack.enter_context(self.context.scope(CONNECTION, conn))
            return await call_next(msg)
