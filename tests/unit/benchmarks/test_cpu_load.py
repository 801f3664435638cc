"""The machine-load figures of the latency scenario (``benchmarks.support.cpu_load``)."""

from __future__ import annotations

import time

import pytest

from benchmarks.support.cpu_load import CpuSample, busy_seconds, busy_share, role_seconds


def test_role_seconds_counts_processes_started_in_between_and_skips_ended_ones() -> None:
    start = CpuSample(machine=(100, 1000), processes={1: ("postgres", 2.0), 2: ("kafka", 5.0)})
    end = CpuSample(
        machine=(400, 2000),
        processes={1: ("postgres", 2.5), 3: ("postgres", 0.25), 4: ("consumer", 1.0)},
    )
    assert role_seconds(start, end) == {"postgres": 0.75, "consumer": 1.0}
    assert busy_share(start, end) == pytest.approx(0.3)


def test_a_reused_pid_of_another_role_counts_whole() -> None:
    start = CpuSample(machine=None, processes={7: ("kafka", 9.0)})
    end = CpuSample(machine=None, processes={7: ("postgres", 0.5)})
    assert role_seconds(start, end) == {"postgres": 0.5}
    assert busy_share(start, end) is None
    assert busy_seconds(start, end) is None


def test_this_process_burning_cpu_shows_as_the_consumer() -> None:
    before = CpuSample()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = CpuSample()
    assert role_seconds(before, after)["consumer"] >= 0.2
    share = busy_share(before, after)
    assert share is not None and 0 < share <= 1
    busy = busy_seconds(before, after)
    assert busy is not None and busy >= 0.2
