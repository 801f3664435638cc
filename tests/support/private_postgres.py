"""A private PostgreSQL server for a test that must restart it (never the shared one).

``initdb`` in a temporary folder, a free port, ``wal_level=logical``, trust authentication on
127.0.0.1 only. Run as root, the server runs as the ``postgres`` user (PostgreSQL refuses
root). Skips the test when no PostgreSQL binaries are installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.missing import missing
from tests.support.nats import free_port

__all__ = ["PrivatePostgres"]


def _binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """One PostgreSQL server of the test's own; ``start``/``restart``/``stop`` keep its data,
    ``close`` removes it."""

    def __init__(self) -> None:
        binaries = _binaries()
        if binaries is None:
            missing("no PostgreSQL binaries (initdb): run scripts/services up, which installs them")
        self.bin = binaries
        # Not under pytest's tmp_path: its parents are private to root, and the server's
        # user must reach its data folder.
        directory = Path(tempfile.mkdtemp(prefix="okt-pg-"))
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        directory.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(directory, self._user.pw_uid, self._user.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _demote(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, preexec_fn=self._demote)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}")

    def start(self, timeout: float = 30.0) -> None:
        assert self.process is None, "already running"
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
        argv += ["-c", "wal_level=logical", "-c", "max_replication_slots=4"]
        argv += ["-c", "max_wal_senders=4", "-c", "fsync=off"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._demote
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            if "ready to accept connections" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"postgres did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, nothing committed is lost."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        with self.log.open("a") as log:  # the next start waits for its own "ready" line
            log.write("--- stopped by the test\n")
        text = self.log.read_text(errors="replace")
        self.log.write_text(text.replace("ready to accept connections", "was ready"))

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()
