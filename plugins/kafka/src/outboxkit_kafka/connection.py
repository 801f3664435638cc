"""Creating and starting the aiokafka producer: options from settings, a bounded first connect.

The producer is idempotent with ``acks=all``. aiokafka sends at most one request in flight per
partition for an idempotent producer and retries it with the same sequence numbers, so records
of one partition (hence of one key, hence of one aggregate) land in the order they were sent,
without duplicates from its own retries.
"""

from __future__ import annotations

import asyncio  # open_connection as aiokafka does: its OSError keeps the errno
import logging
import os
import ssl
from typing import Any

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context

from outboxkit.closing import CLOSE_TIMEOUT, close_within
from outboxkit.errors import ConfigurationError, PublisherUnavailableError
from outboxkit_kafka.settings import KafkaSettings

__all__ = ["admin_options", "producer_options", "start_producer"]

log = logging.getLogger("outboxkit.kafka")
client_log = logging.getLogger("aiokafka")
"""aiokafka's client logger (it logs each bootstrap server it cannot reach)."""


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    if not settings.protocol().endswith("SSL"):
        return None
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.ssl_cafile,
            certfile=settings.ssl_certfile,
            keyfile=settings.ssl_keyfile,
            password=settings.ssl_password,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"kafka TLS files cannot be loaded: {exc}") from exc
    return context


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments of ``AIOKafkaProducer`` for ``settings``."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.servers(),
        "client_id": settings.client_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.max_batch_size,
        "max_request_size": settings.max_request_size,
        "compression_type": None if settings.compression == "none" else settings.compression,
        "request_timeout_ms": settings.request_timeout_ms,
        "retry_backoff_ms": settings.retry_backoff_ms,
        "security_protocol": settings.protocol(),
        "ssl_context": _ssl_context(settings),
    }
    if settings.sasl_mechanism is not None:
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    return options


_ADMIN_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "client_id",
        "request_timeout_ms",
        "retry_backoff_ms",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    }
)


def admin_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments of ``AIOKafkaAdminClient``: the producer's connection options."""
    return {k: v for k, v in producer_options(settings).items() if k in _ADMIN_OPTIONS}


_REFUSALS = (
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
    ssl.SSLCertVerificationError,
)
"""Bootstrap errors that trying again will not fix: the start fails with ``retriable=False``."""


class _BootstrapErrors(logging.Filter):
    """Collects aiokafka's per-server 'Unable connect to' errors of a start instead of logging
    them: the start's own error says what is wrong, once."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Unable connect to"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(a for a in args if isinstance(a, BaseException))
        return False


async def start_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    """A started producer, or PublisherUnavailableError within ``connect_timeout_ms``
    (``retriable=False`` if the cluster refused the credentials or the certificate).

    The error names the bootstrap servers and the reason, never a credential.
    """
    producer = AIOKafkaProducer(**producer_options(settings))
    timeout = settings.connect_timeout_ms / 1000
    reason = f"no answer within connect_timeout_ms={settings.connect_timeout_ms}"
    refusal: BaseException | None = None
    started = False
    bootstrap = _BootstrapErrors()
    client_log.addFilter(bootstrap)
    try:
        with anyio.move_on_after(timeout):
            try:
                await producer.start()
                started = True
            except KafkaConnectionError:
                refusal = next((e for e in bootstrap.errors if isinstance(e, _REFUSALS)), None)
                if refusal is None:
                    reason = await _unreachable_reason(settings.servers())
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        client_log.removeFilter(bootstrap)
    if started:
        return producer
    with anyio.CancelScope(shield=True):
        try:
            await close_within(producer.stop, CLOSE_TIMEOUT)
        except Exception as exc:  # it never started; nothing to lose
            log.debug("stopping a Kafka producer that never started: %r", exc)
    if refusal is not None:
        reason = f"{type(refusal).__name__}: {refusal}: check the security and SASL settings"
    where = f"{settings.bootstrap_servers} ({settings.protocol()})"
    raise PublisherUnavailableError(
        f"cannot connect to Kafka at {where}: {reason}", retriable=refusal is None
    )


async def _unreachable_reason(servers: list[str]) -> str:
    """Why no bootstrap server answered: aiokafka only logs the socket errors, so ask again."""
    reasons: list[str] = []
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with anyio.fail_after(2):
                _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except TimeoutError:
            reasons.append(f"{server}: connect timed out")
        except OSError as exc:
            reasons.append(f"{server}: {os.strerror(exc.errno) if exc.errno else exc}")
        else:
            writer.close()
            reasons.append(f"{server}: port open but no Kafka answer (check security settings)")
    return "; ".join(reasons)
