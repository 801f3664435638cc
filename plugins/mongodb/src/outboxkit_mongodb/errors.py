"""Errors specific to the mongodb store."""

from __future__ import annotations

from outboxkit.errors import OutboxError

__all__ = ["InvalidWriteError"]


class InvalidWriteError(OutboxError, ValueError):
    """A writer call was refused before anything was written (filter, update or document)."""
