"""Settings of the ``pg`` store (flags ``--pg-*``, env ``OUTBOXKIT_PG_*``, TOML ``[pg]``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from outboxkit.errors import ConfigurationError
from outboxkit.message import DEFAULT_MAX_PAYLOAD_BYTES
from outboxkit.sharding import DEFAULT_SHARD_COUNT

__all__ = ["PostgresSettings", "SslMode"]

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
"""libpq's ``sslmode`` values, with libpq's meaning."""
_SECRET = {"secret": True}


class PostgresSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where the outbox table lives and how the relay talks to it."""

    dsn: Annotated[
        str,
        msgspec.Meta(description="PostgreSQL DSN (its password is masked in logs and errors)"),
    ] = "postgresql://postgres@127.0.0.1:5432/postgres"
    schema: Annotated[str, msgspec.Meta(description="schema of the outbox tables")] = "public"
    table: Annotated[str, msgspec.Meta(description="name of the outbox table")] = "outbox"
    shard_count: Annotated[
        int,
        msgspec.Meta(
            ge=1, le=4096, description="shard count set by the first migrate (later runs keep it)"
        ),
    ] = DEFAULT_SHARD_COUNT
    pool_min: Annotated[int, msgspec.Meta(ge=1, description="relay pool: idle connections")] = 2
    pool_max: Annotated[int, msgspec.Meta(ge=2, description="relay pool: max connections")] = 10
    notify: Annotated[
        bool, msgspec.Meta(description="wake the relay with LISTEN/NOTIFY (else poll only)")
    ] = True
    connect_timeout: Annotated[
        float, msgspec.Meta(gt=0, description="seconds to wait for a connection")
    ] = 10.0
    max_payload_bytes: Annotated[
        int, msgspec.Meta(ge=1, description="largest payload the writer accepts")
    ] = DEFAULT_MAX_PAYLOAD_BYTES
    mode: Annotated[
        Literal["table", "wal"],
        msgspec.Meta(
            description="table: messages are rows of the outbox table; wal: writers emit "
            "logical decoding messages (PostgresWalOutbox) and one relay reads them from a "
            "replication slot (docs/log-tailing.md)"
        ),
    ] = "table"
    wake_from_log: Annotated[
        bool,
        msgspec.Meta(
            description="table mode: learn which shards got rows from a replication slot "
            "on the table's inserts (writers then need no NOTIFY: notify=False)"
        ),
    ] = False
    slot: Annotated[
        str | None,
        msgspec.Meta(
            description="replication slot and publication name "
            "(default: outboxkit_<schema>_<table>)"
        ),
    ] = None
    slot_lag_warning_bytes: Annotated[
        int,
        msgspec.Meta(ge=0, description="status warns when the slot holds back more WAL"),
    ] = 1 << 30

    ssl_mode: Annotated[
        SslMode | None,
        msgspec.Meta(
            description="TLS: disable, allow, prefer, require, verify-ca or verify-full "
            "(default: the DSN's sslmode, else prefer; verify-full when a ssl_* file is given)"
        ),
    ] = None
    ssl_root_cert: Annotated[
        str | None,
        msgspec.Meta(
            description="CA certificates (PEM) that verify the server (default with "
            "verify-ca/verify-full: the system's trusted CAs)"
        ),
    ] = None
    ssl_cert: Annotated[
        str | None, msgspec.Meta(description="client certificate (PEM) for certificate auth")
    ] = None
    ssl_key: Annotated[str | None, msgspec.Meta(description="private key (PEM) of ssl_cert")] = None
    ssl_key_password: Annotated[
        str | None, msgspec.Meta(description="password of ssl_key", extra=_SECRET)
    ] = None

    def tls_mode(self) -> SslMode | None:
        """The ssl_mode, else verify-full when a ssl_* file is given, else None (the DSN's
        sslmode, or asyncpg's default: prefer)."""
        if self.ssl_mode is not None:
            return self.ssl_mode
        if self.ssl_root_cert is not None or self.ssl_cert is not None:
            return "verify-full"
        return None

    def __post_init__(self) -> None:
        if self.ssl_key is not None and self.ssl_cert is None:
            raise ConfigurationError("pg ssl_key needs ssl_cert (the client certificate)")
        mode = self.tls_mode()
        files = self.ssl_root_cert is not None or self.ssl_cert is not None
        if files and mode in ("disable", "allow", "prefer"):
            raise ConfigurationError(
                f"pg ssl_mode {mode} does not use ssl_root_cert/ssl_cert: "
                "set ssl_mode require, verify-ca or verify-full (or drop the files)"
            )
