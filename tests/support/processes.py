"""Child processes of the tests (relays, consumers): each in a process and session of its own,
configured only through the environment the test gives it (no ``OUTBOXKIT_*`` variable of the
test's own environment leaks in), its output appended to a log file."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from tests.support import REPO

__all__ = ["ChildProcess"]


class ChildProcess:
    """``argv`` run in ``cwd`` with the environment minus ``OUTBOXKIT_*`` plus ``env``, its
    output (stdout and stderr) appended to ``log_path``; :meth:`start` starts it."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path = REPO
    ) -> None:
        self.argv = list(argv)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        self.env.update(env)
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
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
        if self.running:
            self.signal(signal.SIGKILL)
            assert self.process is not None
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
