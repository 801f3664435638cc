"""Settings of the Kafka publisher (CLI ``--kafka-*``, env ``OUTBOXKIT_KAFKA_*``, TOML
table ``[kafka]``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from outboxkit.errors import ConfigurationError
from outboxkit.message import check_template

__all__ = ["Compression", "KafkaSettings", "SaslMechanism", "SecurityProtocol"]

Compression = Literal["none", "gzip", "lz4", "zstd"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

_SECRET = {"secret": True}
# The python package each codec needs (aiokafka imports it lazily).
_CODEC_PACKAGES = {"gzip": None, "lz4": "lz4", "zstd": "zstandard"}


class KafkaSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where and how the ``kafka`` publisher sends messages.

    The producer is always idempotent with ``acks=all``; those are not settings.
    """

    bootstrap_servers: Annotated[
        str, msgspec.Meta(description="comma-separated host:port list of Kafka brokers")
    ] = "127.0.0.1:9092"
    topic_template: Annotated[
        str,
        msgspec.Meta(
            description="topic of each message; fields {topic} (falls back to the aggregate "
            "type), {aggregate_type}, {aggregate_id}, {event_type}"
        ),
    ] = "{topic}"
    client_id: Annotated[str, msgspec.Meta(description="client id shown in broker logs")] = (
        "outboxkit"
    )
    create_topics: Annotated[
        bool,
        msgspec.Meta(
            description="create missing topics on first use (with topic_partitions and "
            "topic_replication_factor); off: a message to a missing topic is dead-lettered"
        ),
    ] = False
    topic_partitions: Annotated[
        int, msgspec.Meta(ge=1, description="partitions of a topic made by create_topics")
    ] = 6
    topic_replication_factor: Annotated[
        int,
        msgspec.Meta(ge=1, description="replication factor of a topic made by create_topics"),
    ] = 1
    linger_ms: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="ms the producer waits for more records before sending a batch; the "
            "publisher hands it complete batches (one publish call's records per partition), "
            "which are sent at once",
        ),
    ] = 0
    max_batch_size: Annotated[
        int, msgspec.Meta(ge=1024, description="bytes of records per partition batch")
    ] = 262144
    max_request_size: Annotated[
        int,
        msgspec.Meta(
            ge=1024,
            description="largest record (key, value and headers) in bytes; bigger ones fail "
            "at once, without a retry",
        ),
    ] = 1048576
    compression: Annotated[
        Compression,
        msgspec.Meta(
            description="batch compression: none, gzip, lz4 (needs lz4), zstd (needs zstandard)"
        ),
    ] = "none"
    connect_timeout_ms: Annotated[
        int, msgspec.Meta(gt=0, description="ms to reach the cluster at start before giving up")
    ] = 10000
    request_timeout_ms: Annotated[
        int, msgspec.Meta(gt=0, description="ms to wait for a broker's answer to one request")
    ] = 30000
    delivery_timeout_ms: Annotated[
        int,
        msgspec.Meta(
            gt=0,
            description="ms one publish call waits for acknowledgements; messages not "
            "acknowledged by then are reported as retriable failures",
        ),
    ] = 30000
    retry_backoff_ms: Annotated[
        int, msgspec.Meta(ge=0, description="ms between the producer's internal retries")
    ] = 100
    security_protocol: Annotated[
        SecurityProtocol | None,
        msgspec.Meta(
            description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; by default derived from "
            "the sasl_* and ssl_* settings"
        ),
    ] = None
    sasl_mechanism: Annotated[
        SaslMechanism | None,
        msgspec.Meta(description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    ] = None
    sasl_username: Annotated[str | None, msgspec.Meta(description="SASL user name")] = None
    sasl_password: Annotated[
        str | None, msgspec.Meta(description="SASL password", extra=_SECRET)
    ] = None
    ssl_cafile: Annotated[
        str | None, msgspec.Meta(description="CA bundle (PEM) to verify the brokers")
    ] = None
    ssl_certfile: Annotated[
        str | None, msgspec.Meta(description="client certificate (PEM) for mutual TLS")
    ] = None
    ssl_keyfile: Annotated[
        str | None, msgspec.Meta(description="private key (PEM) of ssl_certfile")
    ] = None
    ssl_password: Annotated[
        str | None, msgspec.Meta(description="password of ssl_keyfile", extra=_SECRET)
    ] = None

    def __post_init__(self) -> None:
        check_template(self.topic_template)
        self.servers()
        _check_compression(self.compression)
        if self.sasl_mechanism is not None and (
            self.sasl_username is None or self.sasl_password is None
        ):
            raise ConfigurationError(
                f"kafka sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigurationError("kafka ssl_certfile and ssl_keyfile must be given together")
        protocol = self.protocol()
        if protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ConfigurationError(
                f"kafka security_protocol {protocol} needs sasl_mechanism, sasl_username "
                "and sasl_password"
            )

    def servers(self) -> list[str]:
        """The bootstrap servers as a list; ConfigurationError if one is not host:port."""
        servers = [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
        if not servers:
            raise ConfigurationError("kafka bootstrap_servers is empty: give host:port[,...]")
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError(
                    f"kafka bootstrap server {server!r} is not host:port (e.g. 127.0.0.1:9092)"
                )
        return servers

    def protocol(self) -> SecurityProtocol:
        """The security protocol: the explicit setting, else derived from sasl_* and ssl_*."""
        if self.security_protocol is not None:
            return self.security_protocol
        tls = self.ssl_cafile is not None or self.ssl_certfile is not None
        if self.sasl_mechanism is not None:
            return "SASL_SSL" if tls else "SASL_PLAINTEXT"
        return "SSL" if tls else "PLAINTEXT"


def codec_available(compression: str) -> bool:
    """Whether the python library of ``compression`` is installed."""
    from aiokafka.codec import has_gzip, has_lz4, has_zstd

    checks = {"none": lambda: True, "gzip": has_gzip, "lz4": has_lz4, "zstd": has_zstd}
    return bool(checks[compression]())


def _check_compression(compression: str) -> None:
    if not codec_available(compression):
        package = _CODEC_PACKAGES.get(compression)
        raise ConfigurationError(
            f"kafka compression {compression!r} needs the python package {package!r}, which "
            f"is not installed: pip install {package} or pick another compression"
        )
