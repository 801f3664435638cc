"""Every distribution is typed: a user's mypy analyses the plugins instead of skipping them."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

PACKAGES = [
    "outboxkit",
    "outboxkit_kafka",
    "outboxkit_mongodb",
    "outboxkit_nats",
    "outboxkit_postgres",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_ships_py_typed(package: str) -> None:
    # The wheels include the whole package directory, so the marker there is the wheel's.
    assert resources.files(package).joinpath("py.typed").is_file()


def test_outside_mypy_run_finds_the_plugins_typed(tmp_path: Path) -> None:
    # A user's project: outside the checkout, so the repository's mypy settings don't apply.
    # Skipping the imported modules' bodies keeps it quick; `import-untyped` is decided first.
    source = tmp_path / "service.py"
    source.write_text("".join(f"import {package}\n" for package in PACKAGES))
    done = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--no-incremental",
            "--follow-imports=skip", "--python-executable", sys.executable,
            "--cache-dir", str(tmp_path / "cache"), str(source),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "import-untyped" not in done.stdout
