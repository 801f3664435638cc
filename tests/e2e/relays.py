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
from collections.abc import Mapping
from pathlib import Path

from tests.support import REPO
from tests.support.processes import ChildProcess

__all__ = ["RelayProcess", "mongo_relays", "outboxkit_env"]


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
