"""Output to a reader that went away (``outboxkit status | head -1``): a quiet exit 141."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def run_with_closed_stdout(workdir: Path, *args: str) -> tuple[int, str]:
    """Run the command with a stdout pipe whose reading end is already closed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "outboxkit.cli", *args],
        cwd=workdir,
        env={k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read()
    return process.wait(timeout=60), stderr


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("status", "--json"),
        ("dead-letters", "list"),
        ("dead-letters", "list", "--json"),
    ],
)
def test_closed_stdout_exits_141_without_a_traceback(
    command: tuple[str, ...], run_cli: RunCli, workdir: Path
) -> None:
    assert run_cli("migrate", "--shards", "4").returncode == 0
    assert run_with_closed_stdout(workdir, *command) == (141, "")
