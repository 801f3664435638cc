"""The machine and server versions a run measured, for the results and the docs."""

from __future__ import annotations

import os
import platform
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["describe_host", "kafka_version", "package_versions"]

PACKAGES = ("outboxkit", "asyncpg", "aiokafka", "nats-py", "pymongo", "msgspec", "anyio")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def describe_host() -> dict[str, str]:
    """Cores, memory, CPU model, OS and Python."""
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or "unknown",
        "cores": str(os.cpu_count() or 0),
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def kafka_version() -> str:
    """The broker's version from a local Kafka process's class path, else ``unknown``."""
    pattern = re.compile(rb"kafka(?:_2\.\d+)?-(\d+\.\d+\.\d+)")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            data = cmdline.read_bytes()
        except OSError:
            continue
        if b"kafka.Kafka" in data:
            match = pattern.search(data)
            if match:
                return match.group(1).decode()
    return "unknown (remote broker)"
