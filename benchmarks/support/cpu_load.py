"""How busy the machine was while a scenario ran: every server runs on the same host.

Latency depends on spare CPU more than on anything else on a small machine: a step that
has to wait for a core waits for it at every stage (claim, publish, ack). So the latency
scenario reports, next to its percentiles, the share of the machine's CPU time that was
busy (``/proc/stat``) and the CPU time of the servers and of this process (the consumer),
read from ``/proc/<pid>/stat`` by process name. On a system without ``/proc`` both are
empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

__all__ = ["CpuSample", "busy_seconds", "busy_share", "process_seconds", "role_seconds"]

ROLES = {"postgres": "postgres", "java": "kafka", "nats-server": "nats", "ferretdb": "mongodb"}
"""Process names (``comm``) of the servers, and the role each is reported as."""


@cache
def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def _machine() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def _stat_seconds(text: str) -> float:
    """User + system CPU seconds of a ``/proc/<pid>/stat`` line."""
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _ticks()


def _processes() -> dict[int, tuple[str, float]]:
    """Role and CPU seconds (user + system) since its start of each process of a role."""
    used: dict[int, tuple[str, float]] = {}
    own = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        pid = int(stat.parent.name)
        role = "consumer" if pid == own else ROLES.get(name)
        if role is not None:
            used[pid] = (role, _stat_seconds(text))
    return used


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` used so far; 0 without ``/proc``."""
    try:
        return _stat_seconds(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return 0.0


@dataclass
class CpuSample:
    """A reading to subtract from a later one."""

    machine: tuple[int, int] | None = field(default_factory=_machine)
    processes: dict[int, tuple[str, float]] = field(default_factory=_processes)


def _deltas(start: CpuSample, end: CpuSample) -> tuple[int, int] | None:
    if start.machine is None or end.machine is None:
        return None
    busy, total = (e - s for s, e in zip(start.machine, end.machine, strict=True))
    return busy, total


def busy_share(start: CpuSample, end: CpuSample) -> float | None:
    """The share (0..1) of the machine's CPU time that was busy between two samples."""
    deltas = _deltas(start, end)
    return deltas[0] / deltas[1] if deltas and deltas[1] else None


def busy_seconds(start: CpuSample, end: CpuSample) -> float | None:
    """CPU seconds the machine (all cores) was busy between two samples."""
    deltas = _deltas(start, end)
    return deltas[0] / _ticks() if deltas else None


def role_seconds(start: CpuSample, end: CpuSample) -> dict[str, float]:
    """CPU seconds each role (servers, the consumer) used between two samples.

    A process that started in between counts whole; one that ended in between is missed
    (a PostgreSQL backend of a connection closed during the window).
    """
    used: dict[str, float] = {}
    for pid, (role, seconds) in end.processes.items():
        before = start.processes.get(pid)
        earlier = before[1] if before is not None and before[0] == role else 0.0
        used[role] = used.get(role, 0.0) + seconds - earlier
    return used
