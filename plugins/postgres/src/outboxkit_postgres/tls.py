"""The ``ssl`` argument of ``asyncpg.connect`` built from the typed ``ssl_*`` settings."""

from __future__ import annotations

import ssl
from pathlib import Path

from outboxkit.errors import ConfigurationError
from outboxkit_postgres.settings import PostgresSettings

__all__ = ["ssl_option"]


def _readable(setting: str, path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"pg {setting} {path!r} cannot be read ({exc.strerror or exc}): "
            f"give the path of a readable PEM file"
        ) from None
    return path


def ssl_option(settings: PostgresSettings) -> ssl.SSLContext | str | None:
    """None (the DSN's sslmode applies), a mode asyncpg understands (disable, allow, prefer:
    no verification, as libpq), or a TLS context for require, verify-ca and verify-full.

    As libpq: require verifies the server's certificate only when ssl_root_cert is given;
    verify-ca verifies it against ssl_root_cert (or the system's CAs); verify-full also checks
    that it names the host of the DSN. ConfigurationError if a file cannot be loaded.
    """
    mode = settings.tls_mode()
    if mode is None or mode in ("disable", "allow", "prefer"):
        return mode
    root = _readable("ssl_root_cert", settings.ssl_root_cert)
    cert = _readable("ssl_cert", settings.ssl_cert)
    key = _readable("ssl_key", settings.ssl_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = mode == "verify-full"
    if mode == "require" and root is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            if root is None:
                context.load_default_certs()
            else:
                context.load_verify_locations(cafile=root)
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"pg ssl_root_cert {root!r} holds no usable PEM certificate ({exc.reason})"
            ) from None
    if cert is not None:
        try:
            context.load_cert_chain(cert, key, password=settings.ssl_key_password)
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"pg ssl_cert {cert!r} / ssl_key cannot be loaded ({exc.reason}): "
                "give a PEM certificate, its key and the key's ssl_key_password"
            ) from None
    return context
