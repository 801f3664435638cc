"""``outboxkit relay`` processes of the end-to-end tests, and the settings they get.

A relay runs as a deployment runs it: ``python -m outboxkit.cli relay`` in its own process
and session, configured only through ``OUTBOXKIT_*`` environment variables (none inherited
from the test's environment), logging to ``log_dir/NAME.log``. ``mongo_relays`` makes those
of the MongoDB store.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from tests.e2e.checks import eventually
from tests.support import REPO
from tests.support.postgres import pg_connection
from tests.support.processes import ChildProcess

__all__ = ["RelayProcess", "SlotLease", "mongo_relays", "outboxkit_env"]


def outboxkit_env(**settings: object) -> dict[str, str]:
    """Relay settings as environment variables: ``lease_ttl=2`` → ``OUTBOXKIT_LEASE_TTL=2``."""
    return {f"OUTBOXKIT_{key.upper()}": str(value) for key, value in settings.items()}


class RelayProcess(ChildProcess):
    """``outboxkit relay --store STORE --publisher PUBLISHER --instance-id NAME``.

    ``cwd`` is where it runs (a folder without ``outboxkit.toml`` keeps the environment the
    only source of settings); ``log_level``, if given, is passed as ``--log-level``.
    """

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        store: str,
        publisher: str,
        cwd: Path = REPO,
        log_level: str | None = "info",
    ) -> None:
        argv = [sys.executable, "-m", "outboxkit.cli", "relay", "--store", store]
        argv += ["--publisher", publisher, "--instance-id", name]
        if log_level is not None:
            argv += ["--log-level", log_level]
        super().__init__(argv, env, log_dir / f"{name}.log", cwd)
        self.name = name

    def lost_leases(self) -> list[int]:
        """Shards whose lease this relay lost (heartbeat too late), one per loss, from its log."""
        return [int(m) for m in re.findall(r"lease lost: shard (\d+)", self.log())]

    def held_shards(self) -> set[int]:
        """Shards this relay held by its own log's account (acquired, not released or lost
        since): for a killed relay, also shards whose lease had expired in the database but
        whose batch it was still publishing."""
        held: set[int] = set()
        for event, shard in re.findall(r"lease (acquired|released|lost): shard (\d+)", self.log()):
            (held.add if event == "acquired" else held.discard)(int(shard))
        return held

    def saw_slot_loss(self) -> bool:
        """The relay logged that its slot lease was refused or its stream was ended by the new
        holder, whichever it noticed first."""
        log = self.log()
        return "slot lease lost" in log or "broke" in log

    async def exited(self, timeout: float) -> int:
        """The exit status once the relay stops by itself (``TimeoutError`` after
        ``timeout`` seconds)."""
        assert self.process is not None
        process = self.process
        try:
            return await anyio.to_thread.run_sync(process.wait, timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still runs after {timeout:g}s") from None

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (graceful: drain, release leases; SIGCONT first, in case it was paused),
        SIGKILL if it does not exit in time; the exit status, or None if it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None


class SlotLease:
    """The lease on the replication slot of the outbox in ``schema`` (log tailing), held by
    one of ``relays`` at a time: its holder, fencing token, the slot's stream and position."""

    def __init__(self, dsn: str, schema: str, relays: Sequence[RelayProcess]) -> None:
        self.dsn, self.schema, self.relays = dsn, schema, relays
        self.slot_name = f"outboxkit_{schema}_outbox"

    async def state(self) -> tuple[str | None, int, int | None]:
        """The lease's holder (unexpired), its token, and the slot's active pid."""
        async with pg_connection(self.dsn) as conn:
            row = await conn.fetchrow(
                "SELECT CASE WHEN expires_at > now() THEN owner END AS owner, token "
                f"FROM {self.schema}.outbox_slot_lease"
            )
            pid = await conn.fetchval(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", self.slot_name
            )
        return (None, 0, pid) if row is None else (row["owner"], row["token"], pid)

    async def confirmed_lsn(self) -> int:
        """The slot's confirmed position, in bytes."""
        async with pg_connection(self.dsn) as conn:
            lsn = await conn.fetchval(
                "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                "WHERE slot_name = $1",
                self.slot_name,
            )
        return int(lsn)

    async def hold(self, owner: str, seconds: float) -> None:
        """Take the lease as ``owner`` (no relay) for ``seconds``: the relays cannot read the
        slot until it expires."""
        async with pg_connection(self.dsn) as conn:
            await conn.execute(
                f"INSERT INTO {self.schema}.outbox_slot_lease AS l (slot, owner, token, "
                "expires_at) VALUES ($1, $2, 1, now() + make_interval(secs => $3)) "
                "ON CONFLICT (slot) DO UPDATE SET owner = EXCLUDED.owner, "
                "token = l.token + 1, expires_at = EXCLUDED.expires_at",
                self.slot_name,
                owner,
                seconds,
            )

    async def holder(self) -> RelayProcess:
        """The relay holding the lease, once one does."""

        async def known() -> bool:
            return (await self.state())[0] is not None

        await eventually(known, 20, "a relay holds the slot", 0.1)
        owner = (await self.state())[0]
        return next(r for r in self.relays if r.name == owner)

    async def wait_for_holder(self, name: str, timeout: float = 20) -> float:
        """Until relay ``name`` holds the lease; the seconds waited."""

        async def held() -> bool:
            return (await self.state())[0] == name

        return await eventually(held, timeout, f"{name} holds the slot", 0.1)

    async def new_reader(self, old_pid: int | None, timeout: float) -> tuple[int, int | None]:
        """The new holder's token and its stream's pid, once it streams (the stream of
        ``old_pid`` ended)."""

        async def streaming() -> bool:
            pid = (await self.state())[2]
            return pid is not None and pid != old_pid

        await eventually(streaming, timeout, "the new holder streams the slot", 0.1)
        _, token, pid = await self.state()
        return token, pid


def mongo_relays(
    count: int, folder: Path, mongodb_url: str, database: str, publisher: str, **settings: object
) -> list[RelayProcess]:
    """``count`` relay processes (not started) on the ``orders`` collection of ``database``,
    publishing to ``publisher`` with ``settings`` (``OUTBOXKIT_*``, as a deployment would set
    them), running and logging in ``folder`` (no ``outboxkit.toml`` there: the environment is
    all they read)."""
    env = outboxkit_env(
        store="mongodb",
        publisher=publisher,
        log_level="info",
        poll_interval="0.25",
        drain_timeout="10",
        mongodb_url=mongodb_url,
        mongodb_database=database,
        mongodb_collections="orders",
        mongodb_poll_interval="0.25",
        **settings,
    )
    return [
        RelayProcess(
            f"relay-{i}",
            env,
            folder,
            store="mongodb",
            publisher=publisher,
            cwd=folder,
            log_level=None,
        )
        for i in range(count)
    ]
