"""LISTEN/NOTIFY wake-ups on a dedicated connection, with reconnects and a polling fallback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import asyncpg

__all__ = ["Listener"]

log = logging.getLogger("outboxkit.postgres")


class Listener:
    """Holds a LISTEN connection; :meth:`wait` returns on a notification or a timeout."""

    def __init__(self, dsn: str, channel: str, connect_timeout: float) -> None:
        self._dsn = dsn
        self._channel = channel
        self._timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None
        self._event = asyncio.Event()

    def _notified(self, *_: Any) -> None:
        self._event.set()

    def _lost(self, *_: Any) -> None:
        self._event.set()  # wake the relay so it polls while we reconnect

    async def _ensure(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
            await conn.add_listener(self._channel, self._notified)
            conn.add_termination_listener(self._lost)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("LISTEN connection unavailable, polling meanwhile: %s", type(exc).__name__)
            self._conn = None
            return
        self._conn = conn

    async def wait(self, timeout: float) -> None:
        """Return when a notification arrived since the last call, or after ``timeout`` s."""
        await self._ensure()
        if self._conn is None:
            await anyio.sleep(timeout)
            return
        with anyio.move_on_after(timeout):
            await self._event.wait()
        self._event.clear()

    async def close(self) -> None:
        """Close the LISTEN connection."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close(timeout=5)
