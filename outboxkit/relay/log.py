"""The relay's logger and how it describes errors (type and text, never message payloads)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["brief", "log", "shard_ranges"]

log = logging.getLogger("outboxkit.relay")


def brief(exc: BaseException) -> str:
    """``"TypeName: text"`` of an exception, for one-line warnings. An exception group (what a
    task group raises) is told by its leaves, as ``"A: a; B: b"``: the group's own text
    ("unhandled errors in a TaskGroup") says nothing of what went wrong."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return "; ".join(dict.fromkeys(brief(leaf) for leaf in exc.exceptions))
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def shard_ranges(shards: Iterable[int]) -> str:
    """``[0-15, 17, 20-21]``: sorted shard numbers with runs collapsed, for one-line logs."""
    parts: list[str] = []
    start = prev = None
    for shard in sorted(shards):
        if prev is not None and shard == prev + 1:
            prev = shard
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = shard
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return "[" + ", ".join(parts) + "]"
