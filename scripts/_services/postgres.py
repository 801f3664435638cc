"""PostgreSQL: a cluster of its own under .services/postgres, owned by the postgres user."""

# ruff: noqa: S603, S607 - runs PostgreSQL's tools and test(1)
from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from . import probes
from .common import (
    HOST,
    PORTS,
    STATE,
    ServiceError,
    is_root,
    pid_alive,
    pid_cmdline,
    read_pid,
    run_logged,
    say,
)
from .server import Server


def find_postgres_bin() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def ensure_database(port: int, name: str) -> None:
    """Create the PostgreSQL database ``name`` (a constant of this file) if it is missing."""
    if not probes.pg_query(HOST, port, f"select 1 from pg_database where datname = '{name}'"):
        probes.pg_query(HOST, port, f"create database {name}")


class Postgres(Server):
    name = "postgres"
    env_var = "OUTBOXKIT_TEST_POSTGRES_URL"
    port = PORTS["postgres"]
    database = "outboxkit"

    @property
    def data(self) -> Path:
        return self.dir.resolve() / "data"

    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{self.database}"

    def marker(self) -> str:
        return str(self.data)

    def running_pid(self) -> int | None:
        # postgres keeps its own pid file; the first line is the postmaster's pid
        pid = read_pid(self.data / "postmaster.pid")
        if pid and pid_alive(pid) and self.marker() in pid_cmdline(pid):
            return pid
        return None

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        return probes.pg_probe(HOST, self.port, database="postgres", timeout=timeout)

    def apt_packages(self) -> list[str]:
        return [] if find_postgres_bin() else ["postgresql"]

    def _run_as(self) -> dict[str, Any]:
        if not is_root():
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _as_postgres_ok(self, path: Path) -> bool:
        if not is_root():
            return True
        return (
            subprocess.call(["test", "-x", str(path), "-a", "-w", str(path)], **self._run_as()) == 0
        )

    def prepare(self) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise ServiceError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        if not self.dir.is_symlink():
            self.dir.mkdir(parents=True, exist_ok=True)
        if is_root() and not self.dir.is_symlink():
            # postgres refuses to run as root: the cluster belongs to the postgres user
            shutil.chown(self.dir, "postgres", "postgres")
            if not self._as_postgres_ok(self.dir):
                # a parent folder is closed to the postgres user: keep the cluster in a folder
                # it can reach, linked from .services/postgres
                if any(self.dir.iterdir()):
                    raise ServiceError(f"postgres: the postgres user cannot reach {self.dir}")
                key = hashlib.sha256(str(STATE).encode()).hexdigest()[:12]
                alt = Path("/var/lib/outboxkit-services") / key / "postgres"
                alt.mkdir(parents=True, exist_ok=True)
                shutil.chown(alt, "postgres", "postgres")
                self.dir.rmdir()
                self.dir.symlink_to(alt, target_is_directory=True)
                say(f"postgres: {STATE} is closed to the postgres user; cluster kept in {alt}")
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            say(f"postgres: initdb {self.data}")
            run_logged(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                self.log,
                what="initdb",
                cwd=self.dir,
                **self._run_as(),
            )
        conf = self.data / "postgresql.conf"
        include = "include_if_exists = 'outboxkit.conf'"
        if include not in conf.read_text():
            with conf.open("a") as f:
                f.write(f"\n{include}\n")
        (self.data / "outboxkit.conf").write_text(
            "# written by scripts/services on every start: edit the script, not this file\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "wal_level = logical\n"
            "max_wal_senders = 30\n"
            "max_replication_slots = 30\n"  # log-tailing tests hold one each
            "max_slot_wal_keep_size = 4GB\n"
            "max_connections = 200\n"
            "shared_buffers = 128MB\n"
            "max_locks_per_transaction = 128\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
            "log_min_messages = warning\n"
            "log_connections = off\n"
            "logging_collector = off\n"
        )
        (self.data / "pg_hba.conf").write_text(
            "# written by scripts/services: trust on loopback only\n"
            "host    all          all  127.0.0.1/32  trust\n"
            "host    replication  all  127.0.0.1/32  trust\n"
        )
        if is_root():
            for name in ("outboxkit.conf", "pg_hba.conf"):
                shutil.chown(self.data / name, "postgres", "postgres")
        stale = read_pid(self.data / "postmaster.pid")
        if stale and not (pid_alive(stale) and self.marker() in pid_cmdline(stale)):
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def command(self) -> list[str]:
        bindir = find_postgres_bin()
        assert bindir is not None
        return [str(bindir / "postgres"), "-D", str(self.data)]

    def spawn_kwargs(self) -> dict[str, Any]:
        return {"cwd": str(self.data), **self._run_as()}

    def start(self) -> None:
        super().start()
        self.pidfile.unlink(missing_ok=True)  # postmaster.pid is the pid file

    def after_ready(self) -> None:
        ensure_database(self.port, self.database)
        ok, detail = probes.pg_probe(HOST, self.port, database=self.database)
        if not ok:
            raise ServiceError(f"postgres: database {self.database}: {detail}", self.log)
        wal = probes.pg_query(HOST, self.port, "show wal_level")[0][0]
        if wal != "logical":
            raise ServiceError(f"postgres: wal_level is {wal}, expected logical", self.log)

    def stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown

    def cleanup_after_stop(self) -> None:
        pass

    def data_paths(self) -> list[Path]:
        return [self.dir.resolve(), self.dir] if self.dir.is_symlink() else [self.dir]
