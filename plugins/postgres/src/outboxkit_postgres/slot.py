"""A logical replication slot: its stream (psycopg2's replication connection) and its admin.

The relay reads the slot over the streaming replication protocol through psycopg2's
``LogicalReplicationConnection`` (a maintained driver: outboxkit writes no wire protocol),
driven from the event loop without threads: ``read_message`` never blocks and the loop waits
for the socket to become readable. docs/log-tailing.md gives the figures that chose it over
``pg_logical_slot_peek_binary_changes`` on an asyncpg connection.
"""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import psycopg2  # type: ignore[import-untyped]
import psycopg2.extras  # type: ignore[import-untyped]

from outboxkit.errors import ConfigurationError
from outboxkit.masking import mask_dsn, scrub
from outboxkit_postgres.settings import PostgresSettings

__all__ = [
    "SlotBusyError",
    "SlotStream",
    "check_slot",
    "confirmed_past",
    "drop_slot",
    "ensure_slot",
    "libpq_tls",
    "slot_lag",
]

GUIDE = "docs/log-tailing.md"


def libpq_tls(settings: PostgresSettings) -> dict[str, str]:
    """The ``--pg-ssl-*`` settings as libpq connection parameters (psycopg2 speaks libpq),
    so the replication connection uses the TLS of the relay's other connections."""
    params = {
        "sslmode": settings.tls_mode(),
        "sslrootcert": settings.ssl_root_cert,
        "sslcert": settings.ssl_cert,
        "sslkey": settings.ssl_key,
        "sslpassword": settings.ssl_key_password,
    }
    if params["sslrootcert"] is None and settings.tls_mode() in ("verify-ca", "verify-full"):
        params["sslrootcert"] = "system"  # libpq 16+: the system's trusted CAs, as asyncpg
    return {key: value for key, value in params.items() if value is not None}


class SlotBusyError(Exception):
    """The slot is being read by another connection (``active_pid``)."""


class SlotStream:
    """The changes of one slot from its confirmed position on, as pgoutput records.

    :meth:`confirm` tells the server it may forget the WAL below an LSN (the slot's
    ``confirmed_flush_lsn``); psycopg2 repeats it in every status update.
    """

    def __init__(
        self,
        dsn: str,
        slot: str,
        publication: str,
        connect_timeout: float,
        tls: dict[str, str] | None = None,
    ) -> None:
        self._dsn = dsn
        self._tls = tls or {}
        self._slot = slot
        self._publication = publication
        self._timeout = connect_timeout
        self._conn: Any = None
        self._cursor: Any = None

    async def open(self) -> None:
        """Connect and start streaming (in a worker thread: both calls block)."""
        await anyio.to_thread.run_sync(self._open_blocking, abandon_on_cancel=True)

    def _open_blocking(self) -> None:
        try:
            conn = psycopg2.connect(
                self._dsn,
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
                connect_timeout=max(1, int(self._timeout)),
                **self._tls,
            )
        except psycopg2.OperationalError as exc:
            raise OSError(scrub(str(exc).strip(), self._dsn)) from None
        try:
            cursor = conn.cursor()
            cursor.start_replication(
                slot_name=self._slot,
                decode=False,
                status_interval=1,
                options={
                    "proto_version": "1",
                    "publication_names": self._publication,
                    "messages": "true",
                },
            )
        except psycopg2.errors.ObjectInUse as exc:
            conn.close()
            raise SlotBusyError(str(exc).strip()) from None
        except psycopg2.Error as exc:
            conn.close()
            raise OSError(
                f"cannot read replication slot {self._slot!r} at {mask_dsn(self._dsn)}: "
                f"{scrub(str(exc).strip(), self._dsn)}"
            ) from None
        self._conn, self._cursor = conn, cursor

    def read(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` records already received, as ``(data_start, payload)``; never
        blocks."""
        found: list[tuple[int, bytes]] = []
        cursor = self._cursor
        try:
            while len(found) < limit:
                message = cursor.read_message()
                if message is None:
                    break
                found.append((message.data_start, message.payload))
        except psycopg2.Error as exc:
            raise OSError(f"replication stream of {self._slot!r} broke: {exc}".strip()) from None
        return found

    async def wait(self, timeout: float) -> None:
        """Wait until the server sent something, or ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(self._conn.fileno())

    @property
    def wal_end(self) -> int:
        """The end of the WAL the server has sent us (keepalives move it when we have no
        changes)."""
        return int(self._cursor.wal_end)

    def confirm(self, lsn: int) -> None:
        """Let the server forget the WAL below ``lsn``: the slot's confirmed position."""
        try:
            self._cursor.send_feedback(flush_lsn=lsn, write_lsn=lsn, reply=False)
        except psycopg2.Error as exc:
            raise OSError(f"replication stream of {self._slot!r} broke: {exc}".strip()) from None

    def close(self) -> None:
        """Stop streaming. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


_SLOT_STATE = """
SELECT current_setting('wal_level') AS wal_level,
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)
           AS replication,
       (SELECT plugin FROM pg_replication_slots WHERE slot_name = $1) AS plugin,
       EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS publication
"""


async def check_slot(conn: asyncpg.Connection, slot: str, *, need_slot: bool = True) -> None:
    """Raise :class:`ConfigurationError` (one line) if the server or role cannot serve ``slot``:
    ``wal_level`` below logical, no REPLICATION attribute, or no slot (run migrate)."""
    row = await conn.fetchrow(_SLOT_STATE, slot)
    assert row is not None
    if row["wal_level"] != "logical":
        raise ConfigurationError(
            f"log tailing needs wal_level=logical, the server has {row['wal_level']}: set it "
            f"in postgresql.conf and restart PostgreSQL ({GUIDE})"
        )
    if not row["replication"]:
        raise ConfigurationError(
            "log tailing needs a role with the REPLICATION attribute: "
            f"ALTER ROLE <relay role> WITH REPLICATION ({GUIDE})"
        )
    if need_slot and (row["plugin"] is None or not row["publication"]):
        raise ConfigurationError(
            f"replication slot or publication {slot!r} does not exist: run `outboxkit migrate "
            "--store pg` with the same --pg-mode"
        )
    if need_slot and row["plugin"] != "pgoutput":
        raise ConfigurationError(
            f"replication slot {slot!r} uses plugin {row['plugin']}, not pgoutput: drop it "
            "(`outboxkit drop-slot`) and run migrate again"
        )


async def ensure_slot(conn: asyncpg.Connection, slot: str, table: str | None) -> bool:
    """Create the publication (of ``table``'s inserts, or of nothing but messages) and the
    slot if missing; return True if the slot was created."""
    await check_slot(conn, slot, need_slot=False)
    row = await conn.fetchrow(_SLOT_STATE, slot)
    assert row is not None
    if not row["publication"]:
        target = f" FOR TABLE {table} WITH (publish = 'insert')" if table else ""
        await conn.execute(f'CREATE PUBLICATION "{slot}"{target}')
    if row["plugin"] is None:
        await conn.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
        return True
    return False


async def drop_slot(conn: asyncpg.Connection, slot: str) -> bool:
    """Drop the slot (ending a connection reading it) and its publication; True if either
    existed."""
    active = await conn.fetchval(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot
    )
    if active is not None:
        await conn.execute("SELECT pg_terminate_backend($1)", active)
        await anyio.sleep(0.2)
    dropped = await conn.fetchval(
        "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots "
        "WHERE slot_name = $1",
        slot,
    )
    publication = await conn.fetchval(
        "SELECT count(*) FROM pg_publication WHERE pubname = $1", slot
    )
    if publication:
        await conn.execute(f'DROP PUBLICATION "{slot}"')
    return bool(dropped or publication)


async def terminate_readers(conn: asyncpg.Connection, slot: str) -> None:
    """End a connection still streaming ``slot`` (a relay that lost its lease: fencing)."""
    await conn.execute(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
        "WHERE slot_name = $1 AND active_pid IS NOT NULL",
        slot,
    )


_LAG = """
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes,
       active, wal_status
FROM pg_replication_slots WHERE slot_name = $1
"""


async def slot_lag(conn: asyncpg.Connection, slot: str) -> tuple[int, bool, str] | None:
    """The slot's lag in bytes behind the server's WAL, whether it is read, its wal_status;
    None if there is no such slot."""
    row = await conn.fetchrow(_LAG, slot)
    return None if row is None else (row["lag_bytes"], row["active"], row["wal_status"])


async def confirmed_past(conn: asyncpg.Connection, slot: str, lsn: int) -> bool:
    """Whether ``slot``'s confirmed position reached ``lsn``."""
    return bool(
        await conn.fetchval(
            "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots "
            "WHERE slot_name = $1",
            slot,
            lsn,
        )
    )
