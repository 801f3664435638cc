"""Claiming, acknowledging, retrying and dead-lettering in the SQLite store (blocking; run
in a worker thread). Fenced changes check the lease in their own transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from outboxkit.embedded.sqlite.codec import MESSAGE_COLUMNS, message_from_row
from outboxkit.embedded.sqlite.db import NOW, Tables, immediate
from outboxkit.embedded.sqlite.leasing import check_lease
from outboxkit.protocols import DeadLetter, Envelope, Lease

__all__ = [
    "ack",
    "claim",
    "count_pending",
    "dead_letter",
    "dead_letters",
    "replay",
    "retry",
]

_JSON_LIST = "(SELECT value FROM json_each(?))"


def claim(conn: sqlite3.Connection, t: Tables, shard: int, limit: int) -> list[Envelope]:
    """Due messages of ``shard`` in position order; an aggregate is skipped from its first
    message that is not yet due, so nothing overtakes a message waiting for its retry."""
    rows = conn.execute(
        f"WITH blocked AS (SELECT aggregate_id, MIN(position) AS since FROM {t.outbox} "
        f"  WHERE shard = ? AND available_at > {NOW} GROUP BY aggregate_id) "
        f"SELECT {MESSAGE_COLUMNS}, position, attempts FROM {t.outbox} AS o "
        "WHERE shard = ? AND NOT EXISTS (SELECT 1 FROM blocked AS b "
        "  WHERE b.aggregate_id = o.aggregate_id AND b.since <= o.position) "
        "ORDER BY position LIMIT ?",
        (shard, shard, limit),
    ).fetchall()
    return [
        Envelope(
            message=message_from_row(r),
            shard=shard,
            position=r[-2],
            attempts=r[-1],
            sequence=r[-2],
        )
        for r in rows
    ]


def _positions(envelopes: Sequence[Envelope]) -> str:
    return msgspec.json.encode([e.position for e in envelopes]).decode()


def _fenced(
    conn: sqlite3.Connection, t: Tables, lease: Lease, change: Callable[[], object]
) -> None:
    with immediate(conn):
        check_lease(conn, t, lease)
        change()


def ack(conn: sqlite3.Connection, t: Tables, lease: Lease, envelopes: Sequence[Envelope]) -> None:
    """Delete the published messages. Fenced."""
    _fenced(
        conn,
        t,
        lease,
        lambda: conn.execute(
            f"DELETE FROM {t.outbox} WHERE shard = ? AND position IN {_JSON_LIST}",
            (lease.shard, _positions(envelopes)),
        ),
    )


def retry(
    conn: sqlite3.Connection,
    t: Tables,
    lease: Lease,
    envelopes: Sequence[Envelope],
    error: str,
    delay: float,
) -> None:
    """Count a failed attempt and postpone the messages by ``delay`` s. Fenced."""
    _fenced(
        conn,
        t,
        lease,
        lambda: conn.execute(
            f"UPDATE {t.outbox} SET attempts = attempts + 1, available_at = {NOW} + ?, "
            f"last_error = ? WHERE shard = ? AND position IN {_JSON_LIST}",
            (delay, error, lease.shard, _positions(envelopes)),
        ),
    )


def dead_letter(
    conn: sqlite3.Connection, t: Tables, lease: Lease, envelopes: Sequence[Envelope], error: str
) -> None:
    """Move the messages to the dead letters, counting this failure as an attempt. Fenced."""

    def move() -> None:
        where = f"WHERE shard = ? AND position IN {_JSON_LIST}"
        args = (lease.shard, _positions(envelopes))
        conn.execute(
            f"INSERT INTO {t.dead} ({MESSAGE_COLUMNS}, shard, attempts, error, failed_at) "
            f"SELECT {MESSAGE_COLUMNS}, shard, attempts + 1, ?, {NOW} FROM {t.outbox} "
            f"{where} ORDER BY position",
            (error, *args),
        )
        conn.execute(f"DELETE FROM {t.outbox} {where}", args)

    _fenced(conn, t, lease, move)


def dead_letters(conn: sqlite3.Connection, t: Tables, limit: int) -> list[DeadLetter]:
    """Dead letters, oldest first."""
    rows = conn.execute(
        f"SELECT {MESSAGE_COLUMNS}, shard, error, attempts, failed_at FROM {t.dead} "
        "ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        DeadLetter(
            message=message_from_row(r),
            shard=r[-4],
            error=r[-3],
            attempts=r[-2],
            failed_at=datetime.fromtimestamp(r[-1], UTC),
        )
        for r in rows
    ]


def replay(conn: sqlite3.Connection, t: Tables, ids: Sequence[UUID] | None) -> int:
    """Move dead letters (all if ``ids`` is None) back to the outbox as fresh messages."""
    where = "" if ids is None else f"WHERE id IN {_JSON_LIST}"
    args: tuple[str, ...] = (
        () if ids is None else (msgspec.json.encode([str(i) for i in ids]).decode(),)
    )
    with immediate(conn):
        moved = conn.execute(
            f"INSERT INTO {t.outbox} (shard, {MESSAGE_COLUMNS}, enqueued_at, available_at) "
            f"SELECT shard, {MESSAGE_COLUMNS}, {NOW}, {NOW} FROM {t.dead} {where} ORDER BY seq",
            args,
        ).rowcount
        conn.execute(f"DELETE FROM {t.dead} {where}", args)
    return moved


def count_pending(conn: sqlite3.Connection, t: Tables) -> tuple[int, float | None, int]:
    """Pending count, age of the oldest pending message (database clock), dead letters."""
    pending, age = conn.execute(
        f"SELECT COUNT(*), {NOW} - MIN(enqueued_at) FROM {t.outbox}"
    ).fetchone()
    (dead,) = conn.execute(f"SELECT COUNT(*) FROM {t.dead}").fetchone()
    return int(pending), None if age is None else max(0.0, float(age)), int(dead)
