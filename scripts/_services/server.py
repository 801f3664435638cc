"""The base class of a server: identity, install, start, wait until it answers, stop."""

# ruff: noqa: S603 - runs the servers
from __future__ import annotations

import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

from .common import LOGS, RUN, STATE, ServiceError, pid_alive, pid_cmdline, read_pid, rotate


class Server:
    name: ClassVar[str]
    env_var: ClassVar[str]
    port: ClassVar[int]
    start_timeout: ClassVar[float] = 60.0
    requires: ClassVar[tuple[str, ...]] = ()
    """Servers this one needs running (``up`` starts them too)."""

    def __init__(self) -> None:
        self.dir = STATE / self.name
        self.log = LOGS / f"{self.name}.log"
        self.pidfile = RUN / f"{self.name}.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- identity
    def url(self) -> str:
        raise NotImplementedError

    def external_url(self) -> str | None:
        """A URL given by the environment that replaces the local server (mongodb only)."""
        return None

    def marker(self) -> str:
        """A string that appears in the command line of our process and no one else's."""
        return str(self.dir)

    def running_pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        if pid and pid_alive(pid) and self.marker() in pid_cmdline(pid):
            return pid
        return None

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        raise NotImplementedError

    # -- lifecycle
    def apt_packages(self) -> list[str]:
        return []

    def install(self) -> None:
        """Build or fetch what apt does not provide (runs in a worker thread)."""

    def prepare(self) -> None:
        """Create data directories and configuration (every start)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def spawn_kwargs(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments: by default, run in the server's own folder."""
        return {"cwd": str(self.dir)}

    def start(self) -> None:
        rotate(self.log)
        self.prepare()
        RUN.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        with self.log.open("ab") as out:
            out.write(f"$ {shlex.join(cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.spawn_kwargs(),
            )
        self.pidfile.write_text(f"{self.proc.pid}\n")

    def after_ready(self) -> None:
        """One-time setup once the server answers (e.g. create the database)."""

    def wait_ready(self, pid: int | None, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        detail = "no answer yet"
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with code {self.proc.returncode} while starting", self.log
                )
            if self.proc is None and pid is not None and not pid_alive(pid):
                raise ServiceError(f"{self.name} (pid {pid}) exited", self.log)
            ok, detail = self.probe(timeout=2.0)
            if ok:
                self.after_ready()
                return detail
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} did not answer within {timeout:.0f}s ({detail})", self.log
                )
            time.sleep(0.2)

    def stop_signal(self) -> int:
        return signal.SIGTERM

    def cleanup_after_stop(self) -> None:
        self.pidfile.unlink(missing_ok=True)

    def data_paths(self) -> list[Path]:
        return [self.dir]
