"""Keeping secrets out of logs and error messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_dsn"]

_KV_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")


def mask_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL and ``key=value`` forms)."""
    masked = _KV_PASSWORD.sub(r"\1***", dsn)
    try:
        parts = urlsplit(masked)
        password, port_number = parts.password, parts.port
    except ValueError:
        return "<unparseable DSN>"
    if password is None:
        return masked
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{port_number}" if port_number else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
