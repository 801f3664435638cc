"""``outboxkit inbox migrate|prune|status``: operations on a consumer's inbox.

The inbox plugin is chosen with ``--inbox NAME`` (entry-point group ``outboxkit.inboxes``);
its options are derived from its settings struct under the section ``<name>-inbox`` (flags
``--pg-inbox-dsn``, env ``OUTBOXKIT_PG_INBOX_DSN``, TOML table ``[pg-inbox]``), so they never
clash with the store of the same name: a consumer's database is usually not the outbox's.
"""

from __future__ import annotations

import argparse
import logging
import re
from typing import Any

import anyio

from outboxkit.cli.commands import CommandSpec, Invocation

__all__ = ["INBOX_COMMANDS", "INBOX_GROUPS", "parse_duration"]

log = logging.getLogger("outboxkit.cli")

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit s, m, h or d (``7d``, ``90m``)."""
    found = _DURATION.fullmatch(text)
    if found is None or float(found[1]) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as 3600, 90m, 12h or 7d, got {text!r}"
        )
    return float(found[1]) * _UNITS[found[2]]


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


async def _with_inbox(inv: Invocation, op: Any) -> int:
    chosen = inv.selected["inbox"]
    admin = chosen.plugin.create(chosen.settings)
    await admin.open()
    try:
        result: int = await op(admin)
        return result
    finally:
        await admin.close()


async def _migrate(inv: Invocation) -> int:
    async def op(admin: Any) -> int:
        await admin.migrate()
        print(f"outboxkit: {inv.selected['inbox'].name} inbox is ready")
        return 0

    return await _with_inbox(inv, op)


def _prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="AGE",
        help="remove ids processed longer ago than AGE (e.g. 7d, 12h, 3600); a duplicate "
        "arriving later than that is no longer caught (but the guard still catches it)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=1000,
        metavar="N",
        help="rows removed per statement, each its own short transaction (default: 1000)",
    )
    parser.add_argument(
        "--every",
        type=parse_duration,
        metavar="INTERVAL",
        help="keep running and prune again every INTERVAL until stopped (default: once)",
    )


async def _prune(inv: Invocation) -> int:
    args = inv.args

    async def op(admin: Any) -> int:
        while True:
            removed = await admin.prune(args.older_than, args.batch_size)
            print(f"outboxkit: pruned {removed} processed id{'s' if removed != 1 else ''}")
            if args.every is None:
                return 0
            await anyio.sleep(args.every)

    return await _with_inbox(inv, op)


async def _status(inv: Invocation) -> int:
    async def op(admin: Any) -> int:
        counts = await admin.counts()
        print("  ".join(f"{name}: {count}" for name, count in counts.items()))
        return 0

    return await _with_inbox(inv, op)


INBOX_GROUPS = {"inbox": "operations on a consumer's inbox (processed message ids)"}

INBOX_COMMANDS = (
    CommandSpec(
        ("inbox", "migrate"), "create the inbox tables (re-runnable)", _migrate, uses=("inbox",)
    ),
    CommandSpec(
        ("inbox", "prune"),
        "remove old processed ids in small batches",
        _prune,
        uses=("inbox",),
        add_arguments=_prune_arguments,
    ),
    CommandSpec(
        ("inbox", "status"), "count processed ids and parked messages", _status, uses=("inbox",)
    ),
)
