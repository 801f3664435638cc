"""Settings of the NATS JetStream publisher (CLI ``--nats-*``, env ``OUTBOXKIT_NATS_*``,
TOML table ``[nats]``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from outboxkit.errors import ConfigurationError
from outboxkit.message import check_template
from outboxkit_nats.subjects import check_stream_name

__all__ = ["NatsSettings"]

_SECRET = {"secret": True}


def _default_servers() -> list[str]:
    return ["nats://127.0.0.1:4222"]


class NatsSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where and how the ``nats`` publisher sends messages to JetStream."""

    servers: Annotated[
        list[str],
        msgspec.Meta(min_length=1, description="NATS server URLs (nats://host:port, tls://...)"),
    ] = msgspec.field(default_factory=_default_servers)
    subject_template: Annotated[
        str,
        msgspec.Meta(
            description="subject of each message; fields {topic} (falls back to the "
            "aggregate type), {aggregate_type}, {aggregate_id}, {event_type}"
        ),
    ] = "{topic}"
    stream: Annotated[
        str | None,
        msgspec.Meta(
            description="JetStream stream that must capture the subjects: checked at start "
            "and required of every publish (Nats-Expected-Stream)"
        ),
    ] = None
    create_stream: Annotated[
        bool,
        msgspec.Meta(
            description="create the stream at start if it is missing, capturing "
            "stream_subjects (needs stream and stream_subjects)"
        ),
    ] = False
    stream_subjects: Annotated[
        list[str],
        msgspec.Meta(description="subjects (wildcards allowed) of a stream made by create_stream"),
    ] = msgspec.field(default_factory=list)
    publish_timeout: Annotated[
        float,
        msgspec.Meta(gt=0, description="seconds to wait for a JetStream PubAck"),
    ] = 5.0
    connect_timeout: Annotated[
        float,
        msgspec.Meta(gt=0, description="seconds to connect at start before giving up"),
    ] = 5.0
    reconnect_time_wait: Annotated[
        float,
        msgspec.Meta(gt=0, description="seconds between reconnect attempts to one server"),
    ] = 0.5
    max_in_flight: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            description="publishes awaiting a PubAck at once (at most one per aggregate)",
        ),
    ] = 256
    name: Annotated[str, msgspec.Meta(description="connection name shown in NATS monitoring")] = (
        "outboxkit"
    )
    credentials: Annotated[
        str | None,
        msgspec.Meta(description="path of a .creds file (user JWT and NKey seed)"),
    ] = None
    token: Annotated[
        str | None, msgspec.Meta(description="authentication token", extra=_SECRET)
    ] = None
    user: Annotated[str | None, msgspec.Meta(description="user name")] = None
    password: Annotated[str | None, msgspec.Meta(description="password of user", extra=_SECRET)] = (
        None
    )
    tls_ca: Annotated[
        str | None, msgspec.Meta(description="CA bundle (PEM) to verify the servers")
    ] = None
    tls_cert: Annotated[
        str | None, msgspec.Meta(description="client certificate (PEM) for mutual TLS")
    ] = None
    tls_key: Annotated[str | None, msgspec.Meta(description="private key (PEM) of tls_cert")] = None

    def __post_init__(self) -> None:
        check_template(self.subject_template)
        if self.stream is not None:
            check_stream_name(self.stream)
        if self.create_stream and (self.stream is None or not self.stream_subjects):
            raise ConfigurationError(
                "nats create_stream needs stream and stream_subjects, e.g. --nats-stream "
                "ORDERS --nats-stream-subjects 'orders,orders.>'"
            )
        if not all(isinstance(s, str) and s.strip() for s in self.servers):
            raise ConfigurationError("nats servers must be non-empty URLs like nats://host:4222")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError("nats tls_cert and tls_key must be given together")
        if self.password is not None and self.user is None:
            raise ConfigurationError("nats password is set but user is not: set user too")
        if self.token is not None and self.user is not None:
            raise ConfigurationError("nats token and user/password are exclusive: pick one")
