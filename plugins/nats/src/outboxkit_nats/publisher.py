"""The NATS JetStream publisher.

Each message is published to the subject its routing template gives, with ``Nats-Msg-Id``
set to the message id, so JetStream drops a re-publish inside the stream's duplicate window;
it counts as delivered only once the JetStream PubAck arrives (a duplicate ack gives
``Delivered(duplicate=True)``).

Order: at most one publish per aggregate awaits its PubAck at any time, many aggregates in
parallel (at most ``max_in_flight``; :mod:`outboxkit_nats.sending`).
Once a message of an aggregate fails, the later ones of that aggregate in the same call are
not sent.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from functools import partial

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from outboxkit.closing import CLOSE_TIMEOUT, close_within
from outboxkit.errors import InvalidMessageError, PublisherUnavailableError
from outboxkit.message import Message, broker_headers, route
from outboxkit.metrics import PublisherStats
from outboxkit.protocols import Failed, Outcome
from outboxkit_nats.acks import Acks
from outboxkit_nats.connection import close_quietly, connect, mask_servers
from outboxkit_nats.errors import StreamNotFoundError, classify, no_stream, permission_denied
from outboxkit_nats.sending import Sending
from outboxkit_nats.settings import NatsSettings
from outboxkit_nats.subjects import check_subject, wire_size

__all__ = ["NatsPublisher", "PublisherStats"]

log = logging.getLogger("outboxkit.nats")

MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"
CONTENT_TYPE_HEADER = "Content-Type"

_PUBLISH_DENIED = re.compile(r"permissions violation for publish to \"?([^\"\s']+)", re.I)


_JETSTREAM_OFF = frozenset({10039, 10076})
"""JetStream API error codes: not enabled for the account, not enabled on the server."""


def _jetstream_off(exc: Exception) -> bool:
    """Whether the server said JetStream is off (no responders, or a bare 503), which waiting
    will not change, as opposed to e.g. a JetStream cluster without a leader yet."""
    err_code = getattr(exc, "err_code", None)
    return err_code is None or err_code in _JETSTREAM_OFF


class NatsPublisher:
    """Publishes outbox messages to NATS JetStream (see the module docs)."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        """The publisher's settings."""
        self.stats = PublisherStats()
        """Cumulative outcome counters."""
        self._client: Client | None = None
        self._link: tuple[JetStreamContext, Acks] | None = None
        """The connection's JetStream context and its PubAck subscription."""
        self._reopen = anyio.Lock()
        self._denied: dict[str, str] = {}
        self._last_error = ""

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and check the configured stream exists.

        Raises ``PublisherUnavailableError`` naming the servers (credentials masked) if they
        cannot be reached or refuse the credentials, :class:`StreamNotFoundError` if the
        configured stream does not exist.
        """
        if self._client is not None and not self._client.is_closed:
            return
        client = await connect(self.settings, self._on_error)
        try:
            js = client.jetstream(timeout=self.settings.publish_timeout)
            await self._check_stream(js)
            acks = Acks(client)
            await acks.open()
        except BaseException:
            await close_quietly(client)
            raise
        self._client, self._link = client, (js, acks)

    async def close(self) -> None:
        """Flush buffered publishes and disconnect, within
        :data:`~outboxkit.closing.CLOSE_TIMEOUT` seconds (then the connection is left
        behind: the relay publishes what it held again). Idempotent."""
        client, self._client, self._link = self._client, None, None
        if client is None or client.is_closed:
            return

        async def flush_and_close() -> None:
            try:
                await client.flush(timeout=math.ceil(min(self.settings.publish_timeout, 3)))
            except Exception as exc:
                log.warning("NATS flush on close failed: %s", exc)
            await client.close()

        with anyio.CancelScope(shield=True):
            if not await close_within(flush_and_close, CLOSE_TIMEOUT):
                log.warning(
                    "the NATS connection did not close within %gs (no answer from %s): gave up",
                    CLOSE_TIMEOUT,
                    mask_servers(self.settings.servers),
                )

    async def _check_stream(self, js: JetStreamContext) -> None:
        """Check JetStream answers and, if configured, that the stream exists (creating it
        with ``create_stream``)."""
        stream = self.settings.stream
        servers = mask_servers(self.settings.servers)
        try:
            if stream is None:
                await js.account_info()
            else:
                try:
                    await js.stream_info(stream)
                except nats.js.errors.NotFoundError:
                    if not self.settings.create_stream:
                        raise
                    await self._create_stream(js, stream)
        except nats.js.errors.NotFoundError:
            raise StreamNotFoundError(
                f"JetStream stream {stream!r} does not exist on {servers}: create it "
                "(e.g. `nats stream add`) or fix the stream setting"
            ) from None
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
            if _jetstream_off(exc):
                raise PublisherUnavailableError(
                    f"JetStream does not answer on {servers}: is it enabled (nats-server -js)?",
                    retriable=False,
                ) from None
            raise PublisherUnavailableError(
                f"JetStream is not available on {servers} yet: {exc}"
            ) from None
        except (nats.errors.Error, OSError) as exc:
            raise PublisherUnavailableError(
                f"cannot query JetStream (stream {stream!r}) on {servers}: {exc}"
            ) from exc

    async def _create_stream(self, js: JetStreamContext, stream: str) -> None:
        subjects = list(self.settings.stream_subjects)
        try:
            await js.add_stream(name=stream, subjects=subjects)
        except nats.js.errors.BadRequestError as exc:
            try:
                await js.stream_info(stream)  # made meanwhile by another relay: fine
            except nats.js.errors.NotFoundError:
                raise StreamNotFoundError(
                    f"cannot create JetStream stream {stream!r} capturing "
                    f"{', '.join(subjects)}: {exc.description or exc}"
                ) from None
            return
        log.info("created JetStream stream %r capturing %s", stream, ", ".join(subjects))

    async def ping(self) -> None:
        """Round-trip a PING to the server: the relay's readiness check (it bounds the wait)."""
        if self._client is None or not self._client.is_connected:
            raise PublisherUnavailableError("not connected to NATS")
        await self._client.flush()

    async def _jetstream(self) -> tuple[JetStreamContext, Acks]:
        """The JetStream context and PubAck subscription, reconnecting if the connection was
        closed under us."""
        if self._client is None or self._link is None:
            raise PublisherUnavailableError("the NATS publisher is not open: call open() first")
        if self._client.is_closed:
            async with self._reopen:
                if self._client is not None and self._client.is_closed:
                    reason = self._client.last_error
                    log.warning("NATS connection was closed (%s); reconnecting", reason)
                    await self.open()
        assert self._link is not None
        return self._link

    async def _on_error(self, exc: Exception) -> None:
        match = _PUBLISH_DENIED.search(str(exc))
        if match:
            self._denied[match.group(1)] = str(exc).removeprefix("nats: ")
        # While a server is down the same error repeats at every reconnect attempt.
        text = str(exc) or type(exc).__name__
        log.log(logging.DEBUG if text == self._last_error else logging.WARNING, "NATS: %s", text)
        self._last_error = text

    # -- publishing -----------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        """Publish ``messages``; one outcome each, in order (see the module docs)."""
        if not messages:
            return []
        try:
            js, acks = await self._jetstream()
        except PublisherUnavailableError as exc:
            return self.stats.count(
                [Failed(f"NATS unavailable: {exc}", retriable=True)] * len(messages)
            )
        sending = Sending(acks, self.settings, self._prepare, partial(self._failure, js))
        outcomes = await sending.run(messages)
        self.stats.not_sent += sending.held_back
        for subject in sending.acknowledged:
            self._denied.pop(subject, None)
        return self.stats.count(outcomes)

    def _prepare(self, message: Message) -> tuple[str, dict[str, str]]:
        """Subject and headers of ``message``; InvalidMessageError if it cannot be sent."""
        subject = check_subject(route(message, self.settings.subject_template))
        headers = dict(broker_headers(message))
        headers[CONTENT_TYPE_HEADER] = message.content_type
        headers[MSG_ID_HEADER] = str(message.id)
        if self.settings.stream is not None:
            headers[EXPECTED_STREAM_HEADER] = self.settings.stream
        assert self._client is not None
        limit = self._client.max_payload
        size = wire_size(message.payload, headers)
        if size > limit:
            raise InvalidMessageError(
                f"message {message.id} to {subject!r} is {size} bytes with its headers, over "
                f"the NATS server's max_payload of {limit}: store large data elsewhere and "
                "reference it, or raise max_payload on the server"
            )
        return subject, headers

    async def _failure(self, js: JetStreamContext, exc: BaseException, subject: str) -> Failed:
        timeout = self.settings.publish_timeout
        if isinstance(exc, TimeoutError) and subject in self._denied:
            return permission_denied(subject, self._denied[subject])
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            return await self._confirm_no_stream(js, subject)
        failure = classify(exc, subject, timeout)
        if failure.retriable:
            log.debug("retriable NATS publish failure: %s", failure.error)
        return failure

    async def _confirm_no_stream(self, js: JetStreamContext, subject: str) -> Failed:
        """No responders may also mean JetStream is not up yet: ask its API to be sure."""
        try:
            await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            return no_stream(subject)
        except Exception as exc:
            return Failed(
                f"no JetStream responder for {subject!r} and its API does not answer "
                f"({type(exc).__name__}: {exc}); JetStream may be starting",
                retriable=True,
            )
        return Failed(
            f"no JetStream responder for {subject!r} although a stream captures it; "
            "JetStream may be recovering",
            retriable=True,
        )
