"""LISTEN/NOTIFY wake-ups on a dedicated connection, with reconnects and a polling fallback."""

from __future__ import annotations

import logging
import ssl as ssl_module
from typing import Any

import anyio
import asyncpg

__all__ = ["Listener"]

log = logging.getLogger("outboxkit.postgres")


class Listener:
    """Holds a LISTEN connection; :meth:`wait` returns on a notification or a timeout."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        connect_timeout: float,
        *,
        ssl: ssl_module.SSLContext | str | None = None,
    ) -> None:
        self._dsn = dsn
        self._ssl = ssl
        self._channel = channel
        self._timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None
        self._event = anyio.Event()
        self._shards: set[int] | None = set()

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up (every NOTIFY reaches :meth:`wait`)."""
        return self._conn is not None and not self._conn.is_closed()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self._shards is not None:
            try:  # a writer's shard, or a log-woken relay's coalesced "3,7,12"
                self._shards.update(int(shard) for shard in payload.split(","))
            except ValueError:
                self._shards = None  # not ours: wake every shard
        self._event.set()

    def _lost(self, *_: Any) -> None:
        self._shards = None  # wake every shard so they poll while we reconnect
        self._event.set()

    def _take(self) -> set[int] | None:
        shards, self._shards = self._shards, set()
        self._event = anyio.Event()
        return shards

    async def _ensure(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._timeout, ssl=self._ssl)
            await conn.add_listener(self._channel, self._notified)
            conn.add_termination_listener(self._lost)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("LISTEN connection unavailable, polling meanwhile: %s", type(exc).__name__)
            self._conn = None
            return
        self._conn = conn

    async def wait(self, timeout: float) -> set[int] | None:
        """Wait for notifications (or ``timeout`` s); return the notified shards.

        None means "every shard": the timeout passed (time to poll) or the connection was lost.
        """
        await self._ensure()
        if self._conn is None:
            await anyio.sleep(timeout)
            return None
        with anyio.move_on_after(timeout):
            await self._event.wait()
            return self._take()
        self._take()
        return None

    async def close(self) -> None:
        """Close the LISTEN connection."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close(timeout=5)
