"""The relay as users start it: ``outboxkit relay --store pg --publisher kafka`` in its own
process, default settings, configured through the environment (``OUTBOXKIT_PG_DSN``,
``OUTBOXKIT_PG_SCHEMA``, ``OUTBOXKIT_KAFKA_BOOTSTRAP_SERVERS``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import asyncpg
from anyio.abc import Process

from benchmarks.support.cpu_load import process_seconds
from benchmarks.support.server_urls import REPO

__all__ = ["CliRelay"]


def command(notify: bool) -> list[str]:
    """The ``outboxkit`` console script of this environment (``python -m outboxkit.cli``
    if it has none); ``notify=False`` turns LISTEN/NOTIFY wake-ups off (polling)."""
    script = Path(sys.executable).with_name("outboxkit")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "outboxkit.cli"]
    wake = [] if notify else ["--no-pg-notify"]
    return [*base, "relay", "--store", "pg", "--publisher", "kafka", *wake]


class CliRelay:
    """One ``outboxkit relay`` process; its CPU time is counted from :meth:`owned` on."""

    def __init__(self, process: Process, dsn: str, schema: str, log: Path) -> None:
        self.process = process
        self._dsn = dsn
        self._schema = schema
        self._log = log
        self._cpu = 0.0

    @classmethod
    async def start(
        cls, dsn: str, schema: str, bootstrap: str, *, notify: bool, log: Path
    ) -> CliRelay:
        """Start it; its log (stderr) goes to ``log``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        env |= {
            "OUTBOXKIT_PG_DSN": dsn,
            "OUTBOXKIT_PG_SCHEMA": schema,
            "OUTBOXKIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        }
        with log.open("wb") as sink:
            process = await anyio.open_process(
                command(notify), cwd=REPO, env=env, stdin=None, stdout=None, stderr=sink
            )
        return cls(process, dsn, schema, log)

    async def owned(self, timeout: float = 60.0) -> None:
        """Wait until the relay holds a lease on every shard."""
        conn = await asyncpg.connect(self._dsn)
        query = (
            f"SELECT count(*) FILTER (WHERE owner IS NOT NULL AND expires_at > now()) = count(*) "
            f'FROM "{self._schema}"."outbox_leases"'
        )
        try:
            with anyio.fail_after(timeout):
                while not await conn.fetchval(query):
                    if self.process.returncode is not None:
                        tail = self._log.read_text(errors="replace")[-2000:]
                        raise RuntimeError(
                            f"outboxkit relay exited ({self.process.returncode}):\n{tail}"
                        )
                    await anyio.sleep(0.05)
        finally:
            await conn.close()
        self._cpu = process_seconds(self.process.pid)

    async def stop(self) -> float:
        """SIGTERM (it drains and releases its leases), wait; return the CPU seconds it used
        since :meth:`owned`."""
        used = process_seconds(self.process.pid) - self._cpu
        if self.process.returncode is None:
            self.process.terminate()
        with anyio.move_on_after(30):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        return used
