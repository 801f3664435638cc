"""CI smoke run of the benchmark suite: ``python -m benchmarks --size smoke`` completes, every
correctness counter is zero and the result files exist. No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.servers import SERVERS


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_smoke(
    tmp_path: Path, postgres_url: str, kafka_bootstrap: str, nats_url: str, mongodb_url: str
) -> None:
    urls = {
        "postgres": postgres_url,
        "kafka": kafka_bootstrap,
        "nats": nats_url,
        "mongodb": mongodb_url,
    }
    servers = {SERVERS[name].env_var: url for name, url in urls.items()}
    command = [sys.executable, "-m", "benchmarks", "--size", "smoke"]
    command += ["--results-dir", str(tmp_path)]
    # from the repository's root, as README.md says: benchmarks/ is not an installed package
    run = subprocess.run(command, cwd=REPO, env={**os.environ, **servers}, timeout=570)

    latest = tmp_path / "latest"
    for name in ("results.json", "results.md", "results.png"):
        assert (latest / name).stat().st_size > 0, name
    results = json.loads((latest / "results.json").read_text())
    assert results["errors"] == []
    assert results["correctness"], "no scenario checked correctness"
    for check in results["correctness"]:
        assert check["lost"] == 0, check
        assert check["order_violations"] == 0, check
        assert check["unexpected"] == 0, check
        assert check["duplicates"] == 0, check
    scenarios = {m["scenario"] for m in results["measures"]}
    assert {
        "1 throughput",
        "2 write path",
        "4 backlog",
        "5 relay scaling",
        "7 observability",
    } <= scenarios
    assert "8 consumer inbox" in scenarios
    assert {x["kind"] for x in results["latencies"]} == {"commit->ack", "commit->receive"}
    assert any("floor" in x["step"] for x in results["latencies"]), "the latency floor did not run"
    for x in results["latencies"]:  # the machine's load, read from /proc while the writer ran
        assert 0 < x["machine_busy"] <= 1, x
        assert {"relay", "writer", "postgres", "kafka", "consumer"} <= set(x["cpu_us"]), x
    log_tailing = [c["step"] for c in results["correctness"] if c["scenario"] == "9 log tailing"]
    modes = ("notify", "table woken by the log", "WAL-only")
    assert all(any(step.endswith(f", {mode}") for step in log_tailing) for mode in modes), (
        log_tailing
    )
    write_steps = [m["step"] for m in results["measures"] if m["scenario"] == "2 write path"]
    assert any(step.startswith("insert + outbox.add") for step in write_steps), write_steps
    assert any(step.startswith("order + 3 lines") for step in write_steps), write_steps
    assert run.returncode == 0
