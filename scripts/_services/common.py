"""What every server of ``scripts/services`` shares: where things live, the ports, output,
processes, logs and Debian packages."""

# ruff: noqa: S603 - runs apt-get and the tools it installs
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("OUTBOXKIT_SERVICES_DIR") or ROOT / ".services").resolve()
CACHE = STATE / "cache"
LOGS = STATE / "logs"
RUN = STATE / "run"

HOST = "127.0.0.1"
PORTS = {
    "postgres": 55432,
    "kafka": 59092,
    "kafka-controller": 59093,
    "nats": 54222,
    "nats-monitor": 58222,
    "mongodb": 57017,
    "prometheus": 59090,
}

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, file=sys.stderr, flush=True)


class ServiceError(Exception):
    """A server could not be installed or started; carries the log to show."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def pid_cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\x00", b" ")
            .decode(errors="replace")
        )
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        data = f.read().decode(errors="replace").splitlines()
    return "\n".join(data[-lines:])


def rotate(log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists() and log.stat().st_size:
        log.replace(log.with_name(log.name + ".1"))


def run_logged(
    cmd: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    what: str,
    **popen: Any,
) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        rc = subprocess.call(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            **popen,
        )
    if rc != 0:
        raise ServiceError(f"{what} failed (exit {rc}): {shlex.join(cmd)}", log)


def is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------- installing


def find_exe(name: str, *extra: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in extra:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def apt_install(packages: list[str]) -> None:
    """apt-get install; `apt-get update` first only when the package lists don't know them."""
    if not packages:
        return
    sudo: list[str] = []
    if not is_root():
        if shutil.which("sudo") is None:
            raise ServiceError(
                f"missing packages, and not root: run `apt-get install -y {' '.join(packages)}`"
            )
        sudo = ["sudo", "-n"]
    log = LOGS / "apt.log"
    env = {**os.environ, **APT_ENV}
    say(f"installing Debian packages: {' '.join(packages)} (log: {log})")
    install = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *packages]
    try:
        run_logged(install, log, env=env, what="apt-get install")
    except ServiceError:
        say("  package lists are missing or stale: apt-get update, then retry")
        run_logged([*sudo, "apt-get", "update"], log, env=env, what="apt-get update")
        run_logged(install, log, env=env, what="apt-get install")
