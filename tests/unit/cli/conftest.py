"""Running the ``outboxkit`` command as a subprocess in a scratch directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from outboxkit import Message
from tests.support.sqlite import commit_each

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def clean_env() -> dict[str, str]:
    """The environment without OUTBOXKIT_* settings that could leak into the command."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "outboxkit.cli", *args]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory that is the current one, for the command and the test."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run_cli(workdir: Path) -> RunCli:
    """``run_cli("status", "--json")``: run the command in ``workdir``, return the result."""

    def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli_argv(*args),
            cwd=workdir,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def spawn_cli(workdir: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn_cli("relay", ...)``: start the command in ``workdir`` (stderr piped, text)."""
    started: list[subprocess.Popen[str]] = []

    def spawn(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            cli_argv(*args),
            cwd=workdir,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def write_outbox(workdir: Path) -> Callable[[Sequence[Message]], None]:
    """Commit messages to ``workdir/outbox.db`` with the SQLite writer, one transaction each."""

    def write(messages: Sequence[Message]) -> None:
        commit_each(workdir / "outbox.db", messages)

    return write


@pytest.fixture
def status_json(run_cli: RunCli) -> Callable[[], dict[str, Any]]:
    """``status_json()``: the output of ``outboxkit status --json``, decoded."""

    def status() -> dict[str, Any]:
        result = run_cli("status", "--json")
        assert result.returncode == 0, result.stderr
        decoded: dict[str, Any] = msgspec.json.decode(result.stdout)
        return decoded

    return status
