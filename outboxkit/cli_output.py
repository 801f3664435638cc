"""Human and JSON renderings of store status and dead letters for the CLI, and what happens
when the reader of the output goes away (``outboxkit status | head -1``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from outboxkit.protocols import DeadLetter, LeaseInfo, StoreStatus

__all__ = [
    "EXIT_CLOSED_PIPE",
    "closed_pipe",
    "dead_letters_json",
    "format_dead_letters",
    "format_status",
    "table",
]

EXIT_CLOSED_PIPE = 141
"""Exit status when stdout's reader has gone (128 + SIGPIPE, as ``cat`` or ``grep`` give)."""


def closed_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` says stdout's reader went away; if so, stdout is sent to /dev/null so
    the interpreter's last flush cannot fail (and print a traceback) again."""
    if isinstance(exc, BaseExceptionGroup):
        if not all(closed_pipe(e) for e in exc.exceptions):
            return False
    elif not isinstance(exc, BrokenPipeError):
        return False
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(cell)) for cell in col) for col in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}min"
    return f"{value / 3600:.1f}h"


def _expiry(lease: LeaseInfo) -> str:
    if lease.owner is None or lease.expires_in is None:
        return "-"
    if lease.expires_in < 0:
        return f"expired {_seconds(-lease.expires_in)} ago"
    return f"in {_seconds(lease.expires_in)}"


def format_status(status: StoreStatus) -> str:
    """The text of ``outboxkit status``."""
    summary = [
        f"pending:            {status.pending}",
        f"oldest pending age: {_seconds(status.oldest_pending_age)}",
        f"dead letters:       {status.dead_letters}",
        f"shards:             {status.shard_count}",
        f"instances:          {', '.join(status.instances) or 'none'}",
    ]
    rows = [
        [str(lease.shard), lease.owner or "-", str(lease.token), _expiry(lease)]
        for lease in status.leases
    ]
    return "\n".join(summary) + "\n\n" + table(["shard", "owner", "token", "expires"], rows)


def format_dead_letters(letters: Sequence[DeadLetter]) -> str:
    """The text of ``outboxkit dead-letters list``."""
    if not letters:
        return "no dead letters"
    rows = [
        [
            str(dl.message.id),
            f"{dl.message.aggregate_type}/{dl.message.aggregate_id}",
            dl.message.event_type,
            str(dl.attempts),
            dl.failed_at.isoformat(timespec="seconds"),
            dl.error if len(dl.error) <= 60 else dl.error[:57] + "...",
        ]
        for dl in letters
    ]
    return table(["id", "aggregate", "event", "attempts", "failed at", "error"], rows)


def _readable(letter: DeadLetter) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(letter)
    message = letter.message
    if message.content_type.endswith("json"):
        with contextlib.suppress(msgspec.DecodeError):
            data["message"]["payload"] = msgspec.json.decode(message.payload)
    return data


def dead_letters_json(letters: Sequence[DeadLetter]) -> str:
    """Dead letters as a JSON array; JSON payloads are inlined, others stay base64."""
    return msgspec.json.encode([_readable(dl) for dl in letters]).decode()
