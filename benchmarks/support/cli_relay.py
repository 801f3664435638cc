"""The relay as users start it: ``outboxkit relay --store pg --publisher kafka`` in its own
process, default settings, configured through the environment (``OUTBOXKIT_PG_DSN``,
``OUTBOXKIT_PG_SCHEMA``, ``OUTBOXKIT_KAFKA_BOOTSTRAP_SERVERS``) and, for the wake-up or
log-tailing mode, the flags users give (:data:`MODE_FLAGS`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import anyio
import asyncpg
from anyio.abc import Process
from outboxkit_postgres import PostgresSettings, PostgresWalStore

from benchmarks.support.cpu_load import process_seconds
from benchmarks.support.server_urls import REPO

__all__ = ["MODE_FLAGS", "MODE_TEXT", "CliRelay", "Mode", "cli_slot"]

Mode = Literal["notify", "polling", "log", "wal"]
"""How the relay learns of new messages: ``notify``, table + LISTEN/NOTIFY (the default);
``polling``, table, no NOTIFY; ``log``, table woken by the log (``--pg-wake-from-log``);
``wal``, WAL-only (``--pg-mode wal``)."""
MODE_FLAGS: dict[Mode, list[str]] = {
    "notify": [],
    "polling": ["--no-pg-notify"],
    "log": ["--pg-wake-from-log"],
    "wal": ["--pg-mode", "wal"],
}
MODE_TEXT: dict[Mode, str] = {
    "notify": "notify",
    "polling": "polling",
    "log": "table woken by the log",
    "wal": "WAL-only",
}
SLOT_MODES: tuple[Mode, ...] = ("log", "wal")
"""The modes that read a replication slot (``migrate`` creates it, ``drop-slot`` drops it)."""


def command(mode: Mode, *args: str) -> list[str]:
    """``outboxkit <args> --store pg <mode's flags>`` with the console script of this
    environment (``python -m outboxkit.cli`` if it has none)."""
    script = Path(sys.executable).with_name("outboxkit")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "outboxkit.cli"]
    return [*base, *args, "--store", "pg", *MODE_FLAGS[mode]]


def environment(dsn: str, schema: str, bootstrap: str = "") -> dict[str, str]:
    """This process's environment, its ``OUTBOXKIT_*`` variables replaced by the run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
    env |= {"OUTBOXKIT_PG_DSN": dsn, "OUTBOXKIT_PG_SCHEMA": schema}
    if bootstrap:
        env["OUTBOXKIT_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


async def run_cli(mode: Mode, dsn: str, schema: str, *args: str) -> None:
    """Run one ``outboxkit`` command to its end; raise with its output if it fails."""
    result = await anyio.run_process(
        command(mode, *args), cwd=REPO, env=environment(dsn, schema), check=False
    )
    if result.returncode:
        output = (result.stdout + result.stderr).decode(errors="replace")[-2000:]
        raise RuntimeError(f"outboxkit {' '.join(args)} failed ({result.returncode}):\n{output}")


def slot_name(dsn: str, schema: str) -> str:
    """The replication slot ``migrate`` creates for the outbox of ``schema``."""
    return PostgresWalStore(PostgresSettings(dsn=dsn, schema=schema, mode="wal")).slot_name


@asynccontextmanager
async def cli_slot(dsn: str, schema: str, mode: Mode) -> AsyncIterator[None]:
    """For a mode that reads the log: ``outboxkit migrate`` with the mode's flags (publication
    and slot, as users set them up) and ``outboxkit drop-slot`` on exit, whatever happened (a
    forgotten slot keeps WAL forever). Nothing for the other modes."""
    if mode not in SLOT_MODES:
        yield
        return
    try:
        await run_cli(mode, dsn, schema, "migrate")
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await run_cli(mode, dsn, schema, "drop-slot")


class CliRelay:
    """One ``outboxkit relay`` process; its CPU time is counted from :meth:`owned` on."""

    def __init__(self, process: Process, dsn: str, schema: str, mode: Mode, log: Path) -> None:
        self.process = process
        self._dsn = dsn
        self._schema = schema
        self._mode = mode
        self._log = log
        self._cpu = 0.0

    @classmethod
    async def start(
        cls, dsn: str, schema: str, bootstrap: str, *, mode: Mode, log: Path
    ) -> CliRelay:
        """Start it; its log (stderr) goes to ``log``. A mode that reads the log needs its
        slot first (:func:`cli_slot`)."""
        env = environment(dsn, schema, bootstrap)
        with log.open("wb") as sink:
            process = await anyio.open_process(
                command(mode, "relay", "--publisher", "kafka"),
                cwd=REPO,
                env=env,
                stdin=None,
                stdout=None,
                stderr=sink,
            )
        return cls(process, dsn, schema, mode, log)

    async def owned(self, timeout: float = 60.0) -> None:
        """Wait until the relay holds a lease on every shard and, in a mode that reads the
        log, streams the slot."""
        conn = await asyncpg.connect(self._dsn)
        query = (
            f"SELECT count(*) FILTER (WHERE owner IS NOT NULL AND expires_at > now()) = count(*) "
            f'FROM "{self._schema}"."outbox_leases"'
        )
        if self._mode in SLOT_MODES:
            query = (
                f"SELECT ({query}) AND coalesce((SELECT active FROM pg_replication_slots "
                f"WHERE slot_name = '{slot_name(self._dsn, self._schema)}'), false)"
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
