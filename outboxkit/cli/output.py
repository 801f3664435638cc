"""Human and JSON renderings of store status and dead letters for the CLI, and what happens
when the reader of the output goes away (``outboxkit status | head -1``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from outboxkit.protocols import DeadLetter, LeaseInfo, SlotStatus, StoreStatus

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
        f"blocked aggregates: {_blocked(status)}",
        f"parked messages:    {status.parked}"
        + (" (wait behind dead letters with on_dead_letter=block)" if status.parked else ""),
        f"shards:             {status.shard_count}",
        f"instances:          {', '.join(status.instances) or 'none'}",
    ]
    if status.slot is not None:
        summary += _slot_lines(status.slot)
    rows = [
        [str(lease.shard), lease.owner or "-", str(lease.token), _expiry(lease)]
        for lease in status.leases
    ]
    return "\n".join(summary) + "\n\n" + table(["shard", "owner", "token", "expires"], rows)


def _slot_lines(slot: SlotStatus) -> list[str]:
    lag = "-" if slot.lag_bytes is None else f"{slot.lag_bytes} bytes"
    lines = [
        f"slot:               {slot.name} ({'streaming' if slot.active else 'not read'}, "
        f"holder {slot.holder or 'none'})",
        f"slot lag:           {lag}, {_seconds(slot.lag_seconds)}",
    ]
    if slot.warning:
        lines.append(f"warning:            {slot.warning}")
    return lines


def _blocked(status: StoreStatus) -> str:
    """``2 (order-1, order-7)``: the count and the sample of blocked aggregate ids."""
    if not status.blocked_aggregates:
        return "0"
    shown = list(status.blocked_sample)
    if status.blocked_aggregates > len(shown):
        shown.append("...")
    return f"{status.blocked_aggregates} ({', '.join(shown)})"


def format_dead_letters(letters: Sequence[DeadLetter], payloads: bool = False) -> str:
    """The text of ``outboxkit dead-letters list`` (payloads only if asked: they may hold
    personal data)."""
    if not letters:
        return "no dead letters"
    header = ["id", "aggregate", "event", "attempts", "failed at", "error"]
    rows = [
        [
            str(dl.message.id),
            f"{dl.message.aggregate_type}/{dl.message.aggregate_id}",
            dl.message.event_type,
            str(dl.attempts),
            dl.failed_at.isoformat(timespec="seconds"),
            dl.error if len(dl.error) <= 60 else dl.error[:57] + "...",
        ]
        + ([_payload_text(dl)] if payloads else [])
        for dl in letters
    ]
    return table(header + (["payload"] if payloads else []), rows)


def _payload_text(letter: DeadLetter) -> str:
    """The payload as compact JSON if it is JSON, else as base64 (one line either way)."""
    payload = _readable(letter, True)["message"]["payload"]
    return payload if isinstance(payload, str) else msgspec.json.encode(payload).decode()


def _readable(letter: DeadLetter, payloads: bool) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(letter)
    message = letter.message
    if not payloads:
        del data["message"]["payload"]
    elif message.content_type.endswith("json"):
        with contextlib.suppress(msgspec.DecodeError):
            data["message"]["payload"] = msgspec.json.decode(message.payload)
    return data


def dead_letters_json(letters: Sequence[DeadLetter], payloads: bool = False) -> str:
    """Dead letters as a JSON array, without payloads unless ``payloads`` (then JSON
    payloads are inlined, others stay base64)."""
    return msgspec.json.encode([_readable(dl, payloads) for dl in letters]).decode()
