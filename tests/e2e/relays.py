"""``outboxkit relay`` processes of the end-to-end tests, and the settings they get.

A relay runs as a deployment runs it: ``python -m outboxkit.cli relay`` in its own process
and session, configured only through ``OUTBOXKIT_*`` environment variables (none inherited
from the test's environment), logging to ``log_dir/NAME.log``. ``mongo_relays`` makes those
of the MongoDB store.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support import REPO

__all__ = ["RelayProcess", "mongo_relays", "outboxkit_env"]


def outboxkit_env(**settings: object) -> dict[str, str]:
    """Relay settings as environment variables: ``lease_ttl=2`` → ``OUTBOXKIT_LEASE_TTL=2``."""
    return {f"OUTBOXKIT_{key.upper()}": str(value) for key, value in settings.items()}


class RelayProcess:
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
        launcher: list[str] | None = None,
    ) -> None:
        self.name, self.store, self.publisher = name, store, publisher
        self.launcher = launcher or [sys.executable, "-m", "outboxkit.cli"]
        self.cwd, self.log_level = cwd, log_level
        self.log_path = log_dir / f"{name}.log"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        self._env.update(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        argv = [*self.launcher, "relay", "--store", self.store]
        argv += ["--publisher", self.publisher, "--instance-id", self.name]
        if self.log_level is not None:
            argv += ["--log-level", self.log_level]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as in a crash, and reap."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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
