"""Relay instances and shard leases of the SQLite store (blocking; run in a worker thread).

Every expiry is compared with the database clock (:data:`~outboxkit.embedded.sqlite.db.NOW`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from outboxkit.embedded.sqlite.db import NOW, Tables, immediate
from outboxkit.errors import LeaseLostError
from outboxkit.protocols import Lease, LeaseInfo

__all__ = [
    "acquire",
    "check_lease",
    "heartbeat",
    "lease_infos",
    "leave",
    "live_instances",
    "release",
    "renew",
]


def live_instances(conn: sqlite3.Connection, t: Tables) -> list[str]:
    """Owners whose heartbeat has not expired, sorted."""
    rows = conn.execute(f"SELECT owner FROM {t.instances} WHERE expires_at > {NOW}").fetchall()
    return sorted(str(r[0]) for r in rows)


def heartbeat(conn: sqlite3.Connection, t: Tables, owner: str, ttl: float) -> list[str]:
    """Mark ``owner`` alive for ``ttl`` s, forget expired instances, return the live ones."""
    with immediate(conn):
        conn.execute(
            f"INSERT INTO {t.instances} (owner, expires_at) VALUES (?, {NOW} + ?) "
            "ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
            (owner, ttl),
        )
        conn.execute(f"DELETE FROM {t.instances} WHERE expires_at <= {NOW}")
        return live_instances(conn, t)


def leave(conn: sqlite3.Connection, t: Tables, owner: str) -> None:
    """Forget ``owner`` at once."""
    conn.execute(f"DELETE FROM {t.instances} WHERE owner = ?", (owner,))


def lease_infos(conn: sqlite3.Connection, t: Tables) -> list[LeaseInfo]:
    """One :class:`LeaseInfo` per shard, ordered by shard."""
    rows = conn.execute(
        f"SELECT shard, owner, token, expires_at - {NOW} FROM {t.leases} ORDER BY shard"
    ).fetchall()
    return [
        LeaseInfo(shard=s, owner=o, token=tok, expires_in=None if o is None else float(e))
        for s, o, tok, e in rows
    ]


def acquire(
    conn: sqlite3.Connection, t: Tables, owner: str, shard: int, ttl: float
) -> Lease | None:
    """Take ``shard`` if free or expired (token + 1), extend it if ``owner`` holds it."""
    with immediate(conn):
        row = conn.execute(
            f"SELECT owner, token, owner IS NOT NULL AND expires_at > {NOW} "
            f"FROM {t.leases} WHERE shard = ?",
            (shard,),
        ).fetchone()
        if row is None:
            raise ValueError(f"shard {shard} does not exist in {t.name!r}")
        holder, token, live = row
        if live and holder != owner:
            return None
        if not live:
            token += 1
        conn.execute(
            f"UPDATE {t.leases} SET owner = ?, token = ?, expires_at = {NOW} + ? WHERE shard = ?",
            (owner, token, ttl, shard),
        )
        return Lease(shard=shard, owner=owner, token=token)


def renew(conn: sqlite3.Connection, t: Tables, leases: Sequence[Lease], ttl: float) -> list[Lease]:
    """Extend the leases still held (same owner and token, unexpired); return those."""
    kept: list[Lease] = []
    with immediate(conn):
        for lease in leases:
            cursor = conn.execute(
                f"UPDATE {t.leases} SET expires_at = {NOW} + ? "
                f"WHERE shard = ? AND owner = ? AND token = ? AND expires_at > {NOW}",
                (ttl, lease.shard, lease.owner, lease.token),
            )
            if cursor.rowcount == 1:
                kept.append(lease)
    return kept


def release(conn: sqlite3.Connection, t: Tables, leases: Sequence[Lease]) -> None:
    """Free the leases still held with the same token (the token stays, so it only grows)."""
    with immediate(conn):
        conn.executemany(
            f"UPDATE {t.leases} SET owner = NULL, expires_at = NULL "
            "WHERE shard = ? AND owner = ? AND token = ?",
            [(lease.shard, lease.owner, lease.token) for lease in leases],
        )


def check_lease(conn: sqlite3.Connection, t: Tables, lease: Lease) -> None:
    """Raise :class:`LeaseLostError` unless ``lease`` is held and unexpired (call in the
    transaction of the fenced change)."""
    row = conn.execute(
        f"SELECT 1 FROM {t.leases} "
        f"WHERE shard = ? AND owner = ? AND token = ? AND expires_at > {NOW}",
        (lease.shard, lease.owner, lease.token),
    ).fetchone()
    if row is None:
        raise LeaseLostError.not_held(lease)
