"""Where the servers are: ``OUTBOXKIT_TEST_*`` variables, else ``scripts/services env``."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

__all__ = ["Servers", "find_servers"]

from tests.support import REPO
from tests.support.servers import SERVERS

VARIABLES = {name: SERVERS[name].env_var for name in ("postgres", "kafka", "nats", "mongodb")}
"""The servers the benchmarks use, by the test suite's ``OUTBOXKIT_TEST_*`` table."""


@dataclass(frozen=True)
class Servers:
    postgres: str
    kafka: str
    nats: str
    mongodb: str


def _services_env() -> dict[str, str]:
    """The ``export NAME=VALUE`` lines of ``scripts/services env`` (empty if unavailable)."""
    script = REPO / "scripts" / "services"
    if not script.exists():
        return {}
    try:
        out = subprocess.run(
            [str(script), "env"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            found[name.strip()] = value.strip().strip("'\"")
    return found


def find_servers() -> Servers:
    """Server addresses; raise SystemExit with a hint if one is unknown."""
    values = {name: os.environ.get(var, "").strip() for name, var in VARIABLES.items()}
    if not all(values.values()):
        fallback = _services_env()
        for name, var in VARIABLES.items():
            values[name] = values[name] or fallback.get(var, "")
    missing = [VARIABLES[name] for name, value in values.items() if not value]
    if missing:
        raise SystemExit(
            f"python -m benchmarks: {', '.join(missing)} not set: run `scripts/services up` and "
            '`eval "$(scripts/services env)"`'
        )
    return Servers(**values)
