"""Turning exceptions into one masked line (or a scrubbed traceback) for the CLI."""

from __future__ import annotations

from collections.abc import Iterable

from outboxkit.errors import OutboxError
from outboxkit.masking import masker

__all__ = ["Scrubber", "outbox_error"]


class Scrubber:
    """Removes known secret values and DSN passwords from text shown to the user."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        """Remember secret values (e.g. a token or a DSN) to hide wherever they appear."""
        self._secrets.update(values)

    def __call__(self, text: str) -> str:
        return masker(self._secrets)(text)


def outbox_error(exc: BaseException) -> OutboxError | None:
    """The :class:`OutboxError` that explains ``exc``, if any.

    Task groups wrap errors in exception groups; a group whose leaves are all outboxkit errors
    is explained by its first leaf. ``__cause__`` chains are not followed: a crash stays a crash.
    """
    if isinstance(exc, OutboxError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [outbox_error(e) for e in exc.exceptions]
        if leaves and all(leaf is not None for leaf in leaves):
            return leaves[0]
    return None
