"""Opening the NATS connection: options from settings, a bounded first connect, masked URLs.

After the first connect nats-py reconnects on its own, forever
(``max_reconnect_attempts=-1``), buffering publishes meanwhile, so an outage never closes the
client; the first connect, though, is bounded by ``connect_timeout`` and ends at once on an
authorization error, with an error that names the servers (credentials masked) and the reason.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import nats.errors
from nats.aio.client import Client

from outboxkit.closing import close_within
from outboxkit.errors import ConfigurationError, PublisherUnavailableError
from outboxkit.masking import mask_url, mask_urls, scrub
from outboxkit_nats.settings import NatsSettings

__all__ = ["close_quietly", "connect", "mask_server", "mask_servers"]

log = logging.getLogger("outboxkit.nats")

ErrorCallback = Callable[[Exception], Awaitable[None]]


def mask_server(url: str) -> str:
    """``url`` with its password or token (``nats://token@host``) replaced by ``***``."""
    return mask_url(url, user_is_secret=True)


def mask_servers(servers: list[str]) -> str:
    """The server list for messages, credentials masked."""
    return mask_urls(servers, user_is_secret=True)


def is_auth_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the server refused our credentials."""
    if isinstance(exc, nats.errors.AuthorizationError | nats.errors.InvalidUserCredentialsError):
        return True
    return "authorization violation" in str(exc).lower()


def _tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if settings.tls_ca is None and settings.tls_cert is None:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca)
        if settings.tls_cert is not None:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"nats TLS files cannot be loaded: {exc}") from exc
    return context


def _options(settings: NatsSettings, error_cb: ErrorCallback) -> dict[str, Any]:
    options: dict[str, Any] = {
        "servers": list(settings.servers),
        "name": settings.name,
        "error_cb": error_cb,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": settings.reconnect_time_wait,
        "connect_timeout": settings.connect_timeout,
        "dont_randomize": False,
    }
    if settings.credentials is not None:
        if not os.path.isfile(settings.credentials):
            raise ConfigurationError(f"nats credentials file {settings.credentials!r} not found")
        options["user_credentials"] = settings.credentials
    for field in ("token", "user", "password"):
        value = getattr(settings, field)
        if value is not None:
            options[field] = value
    tls = _tls_context(settings)
    if tls is not None:
        options["tls"] = tls
    return options


async def connect(settings: NatsSettings, error_cb: ErrorCallback) -> Client:
    """A connected client, or PublisherUnavailableError after ``connect_timeout``.

    ``error_cb`` receives every asynchronous error of the connection's whole life.
    """
    errors: list[Exception] = []
    refused = anyio.Event()

    async def on_error(exc: Exception) -> None:
        if not client.is_connected:
            errors.append(exc)
            if is_auth_error(exc):
                refused.set()
        await error_cb(exc)

    async def on_disconnect() -> None:
        if client.is_reconnecting:
            log.warning("NATS disconnected; reconnecting (publishes are buffered meanwhile)")

    async def on_reconnect() -> None:
        url = client.connected_url
        log.warning("NATS reconnected to %s", mask_server(url.geturl()) if url else "?")

    client = Client()
    options = _options(settings, on_error)
    options.update(disconnected_cb=on_disconnect, reconnected_cb=on_reconnect)
    with anyio.move_on_after(settings.connect_timeout):
        async with anyio.create_task_group() as tg:

            async def give_up_on_refusal() -> None:
                await refused.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(give_up_on_refusal)
            try:
                await client.connect(**options)
            except Exception as exc:
                errors.append(exc)
            tg.cancel_scope.cancel()
    if client.is_connected:
        return client
    await close_quietly(client)
    rejected = any(is_auth_error(e) for e in errors)
    reason = scrub(
        _reason(errors, settings.connect_timeout), *settings.servers, user_is_secret=True
    )
    raise PublisherUnavailableError(
        f"cannot connect to NATS at {mask_servers(settings.servers)}: {reason}",
        retriable=not rejected,
    )


def _reason(errors: list[Exception], timeout: float) -> str:
    if not errors:
        return f"no answer within connect_timeout={timeout:g}s"
    last = next((e for e in reversed(errors) if is_auth_error(e)), errors[-1])
    if is_auth_error(last):
        return (
            f"authorization refused ({last}); check the token, user/password or "
            "credentials settings"
        )
    text = str(last) or type(last).__name__
    return f"{text} (still failing after {timeout:g}s)"


async def close_quietly(client: Client) -> None:
    """Close a client not handed out (yet), within 2 s, even while cancelled."""
    with anyio.CancelScope(shield=True):
        try:
            await close_within(client.close, 2)
        except Exception as exc:  # the client was never used; nothing to lose
            log.debug("closing an unused NATS client: %r", exc)
