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
from outboxkit.errors import DeadLetterNotFoundError
from outboxkit.protocols import BLOCKED_SAMPLE, DeadLetter, Envelope, Lease

__all__ = [
    "ack",
    "blocked",
    "claim",
    "count_pending",
    "dead_letter",
    "dead_letters",
    "discard",
    "purge",
    "replay",
    "retry",
]

_JSON_LIST = "(SELECT value FROM json_each(?))"


_AFTER_DEAD_LETTER = (
    "EXISTS (SELECT 1 FROM {dead} AS d WHERE d.shard = o.shard "
    "AND d.aggregate_id = o.aggregate_id AND COALESCE(d.position, 0) < o.position)"
)
"""SQL: the outbox row ``o`` comes after a dead letter of its aggregate (a letter from
schema version 1, without a position, comes before every row)."""


def claim(
    conn: sqlite3.Connection, t: Tables, shard: int, limit: int, block: bool = True
) -> list[Envelope]:
    """Due messages of ``shard`` in position order; an aggregate is skipped from its first
    message that is not yet due, so nothing overtakes a message waiting for its retry, and
    with ``block`` from its first dead letter on."""
    after_dead = " AND NOT " + _AFTER_DEAD_LETTER.format(dead=t.dead) if block else ""
    rows = conn.execute(
        f"WITH blocked AS (SELECT aggregate_id, MIN(position) AS since FROM {t.outbox} "
        f"  WHERE shard = ? AND available_at > {NOW} GROUP BY aggregate_id) "
        f"SELECT {MESSAGE_COLUMNS}, position, attempts FROM {t.outbox} AS o "
        "WHERE shard = ? AND NOT EXISTS (SELECT 1 FROM blocked AS b "
        f"  WHERE b.aggregate_id = o.aggregate_id AND b.since <= o.position){after_dead} "
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
            f"INSERT INTO {t.dead} "
            f"({MESSAGE_COLUMNS}, shard, attempts, error, failed_at, position) "
            f"SELECT {MESSAGE_COLUMNS}, shard, attempts + 1, ?, {NOW}, position "
            f"FROM {t.outbox} {where} ORDER BY position",
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


def _chosen(
    conn: sqlite3.Connection, t: Tables, ids: Sequence[UUID] | None
) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause and arguments selecting the dead letters ``ids`` (all if None);
    raise :class:`DeadLetterNotFoundError` if any of them is not a dead letter."""
    if ids is None:
        return "", ()
    wanted = [str(i) for i in dict.fromkeys(ids)]
    args = (msgspec.json.encode(wanted).decode(),)
    found = {r[0] for r in conn.execute(f"SELECT id FROM {t.dead} WHERE id IN {_JSON_LIST}", args)}
    missing = [UUID(i) for i in wanted if i not in found]
    if missing:
        raise DeadLetterNotFoundError(missing)
    return f"WHERE id IN {_JSON_LIST}", args


def replay(conn: sqlite3.Connection, t: Tables, ids: Sequence[UUID] | None) -> int:
    """Move dead letters (all if ``ids`` is None) back to the outbox, each at the position
    it had (a letter of schema version 1 without one goes to the end); none if any id is
    not a dead letter."""
    with immediate(conn):
        where, args = _chosen(conn, t, ids)
        moved = conn.execute(
            f"INSERT INTO {t.outbox} "
            f"(position, shard, {MESSAGE_COLUMNS}, enqueued_at, available_at) "
            f"SELECT position, shard, {MESSAGE_COLUMNS}, {NOW}, {NOW} FROM {t.dead} {where} "
            "ORDER BY seq",
            args,
        ).rowcount
        conn.execute(f"DELETE FROM {t.dead} {where}", args)
    return moved


def discard(conn: sqlite3.Connection, t: Tables, ids: Sequence[UUID] | None) -> int:
    """Delete dead letters (all if ``ids`` is None); none if any id is not a dead letter."""
    with immediate(conn):
        where, args = _chosen(conn, t, ids)
        return conn.execute(f"DELETE FROM {t.dead} {where}", args).rowcount


def purge(conn: sqlite3.Connection, t: Tables, older_than: float) -> int:
    """Delete the dead letters that failed more than ``older_than`` s ago (database clock)."""
    with immediate(conn):
        return conn.execute(
            f"DELETE FROM {t.dead} WHERE failed_at < {NOW} - ?", (older_than,)
        ).rowcount


def count_pending(conn: sqlite3.Connection, t: Tables) -> tuple[int, float | None, int]:
    """Pending count, age of the oldest pending message (database clock), dead letters."""
    pending, age = conn.execute(
        f"SELECT COUNT(*), {NOW} - MIN(enqueued_at) FROM {t.outbox}"
    ).fetchone()
    (dead,) = conn.execute(f"SELECT COUNT(*) FROM {t.dead}").fetchone()
    return int(pending), None if age is None else max(0.0, float(age)), int(dead)


def blocked(conn: sqlite3.Connection, t: Tables) -> tuple[int, list[str], int]:
    """Aggregates with a dead letter (count, the first few ids) and the pending messages
    that come after a dead letter of their aggregate."""
    (count,) = conn.execute(f"SELECT COUNT(DISTINCT aggregate_id) FROM {t.dead}").fetchone()
    sample = conn.execute(
        f"SELECT DISTINCT aggregate_id FROM {t.dead} ORDER BY aggregate_id LIMIT ?",
        (BLOCKED_SAMPLE,),
    ).fetchall()
    (parked,) = conn.execute(
        f"SELECT COUNT(*) FROM {t.outbox} AS o WHERE " + _AFTER_DEAD_LETTER.format(dead=t.dead)
    ).fetchone()
    return int(count), [str(r[0]) for r in sample], int(parked)
