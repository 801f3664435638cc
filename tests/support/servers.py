"""Where the test servers are, and whether they answer.

Server addresses come from ``OUTBOXKIT_TEST_*`` environment variables, which
``scripts/services env`` prints (``scripts/test`` sets them for you)::

    scripts/services up
    eval "$(scripts/services env)"

:func:`require` returns the address after checking, once per process, that the server really
answers (a protocol-level probe of ``scripts/_services/probes.py``, not just an open port), or
raises :class:`Unavailable` with what to do. The pytest fixtures of ``tests/conftest.py`` turn
that into a skip on a developer machine and a failure in CI (:func:`in_ci`).

No pytest here: the benchmarks import this module too.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from scripts._services.probes import probe_url
from tests.support import REPO

__all__ = [
    "HINT",
    "SERVERS",
    "Server",
    "Unavailable",
    "configured",
    "in_ci",
    "listening_pid",
    "require",
    "services_command",
]

HINT = 'run scripts/services up and eval "$(scripts/services env)"'


@dataclass(frozen=True)
class Server:
    kind: str  # the probe kind in scripts/_services/probes.py
    env_var: str
    description: str


SERVERS: dict[str, Server] = {
    "postgres": Server("postgres", "OUTBOXKIT_TEST_POSTGRES_URL", "PostgreSQL"),
    "kafka": Server("kafka", "OUTBOXKIT_TEST_KAFKA_BOOTSTRAP", "Kafka"),
    "nats": Server("nats", "OUTBOXKIT_TEST_NATS_URL", "NATS JetStream"),
    "mongodb": Server("mongodb", "OUTBOXKIT_TEST_MONGODB_URL", "MongoDB-wire server"),
    "prometheus": Server("prometheus", "OUTBOXKIT_TEST_PROMETHEUS_URL", "Prometheus"),
}


class Unavailable(Exception):
    """A server is not configured or does not answer; the message says what to do."""


def in_ci() -> bool:
    """Whether this runs in CI (``CI`` set), where a missing server is a failure."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def configured(name: str) -> str:
    """The configured address of server ``name``, without checking it (Unavailable if unset)."""
    server = SERVERS[name]
    value = os.environ.get(server.env_var, "").strip()
    if not value:
        raise Unavailable(f"{server.env_var} is not set: {HINT}")
    return value


_probed: dict[str, tuple[bool, str]] = {}


def require(name: str) -> str:
    """The configured address of server ``name`` once it answers (probed once per process)."""
    url = configured(name)
    server = SERVERS[name]
    key = f"{name}={url}"
    if key not in _probed:
        _probed[key] = probe_url(server.kind, url, timeout=5.0)
    ok, detail = _probed[key]
    if not ok:
        raise Unavailable(
            f"{server.description} at {server.env_var}={url} does not answer ({detail}): {HINT}"
        )
    return url


def services_command(*args: str, timeout: float = 300) -> str:
    """Run ``scripts/services ARGS`` and return its output, e.g. for outage tests::

        services_command("down", "kafka")   # stops only a Kafka this checkout started
        services_command("up", "kafka")     # back, and answering, when this returns

    Only meaningful when the servers are the local ones; raises CalledProcessError on failure.
    """
    script = REPO / "scripts" / "services"
    done = subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout


def listening_pid(port: int) -> int:
    """The pid of the local process listening on TCP ``port`` (read from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    raise LookupError(f"no process of ours listens on port {port}")
