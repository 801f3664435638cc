"""The relay's logger and how it describes errors (type and text, never message payloads)."""

from __future__ import annotations

import logging

__all__ = ["brief", "log"]

log = logging.getLogger("outboxkit.relay")


def brief(exc: BaseException) -> str:
    """``"TypeName: text"`` of an exception, for one-line warnings."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
