"""docker-compose.yml's `relay` profile: a relay serving /metrics and a Prometheus scraping it.

No Docker engine runs here: the file is parsed, Prometheus' configuration passes ``promtool
check config``, and the environment the relay's containers get is run through the real CLI
(``migrate`` against the test PostgreSQL) so a misspelt setting fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from tests.support import REPO
from tests.support.postgres import scratch_schema
from tests.unit.cli.conftest import clean_env, cli_argv

COMPOSE = REPO / "docker-compose.yml"


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded["services"]


def test_prometheus_scrapes_the_relays_port() -> None:
    found = services()
    relay, prometheus = found["relay"], found["prometheus"]
    port = relay["environment"]["OUTBOXKIT_HTTP_PORT"]
    sources = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    config_file = REPO / sources["/etc/prometheus/prometheus.yml"]
    assert (REPO / sources["/etc/prometheus/alerts.yml"]) == REPO / "deploy" / "alerts.yml"
    config = yaml.safe_load(config_file.read_text())
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    assert targets == [f"{relay['environment']['OUTBOXKIT_HTTP_HOST']}:{port}"]
    for name in ("migrate", "relay", "prometheus"):
        assert found[name]["profiles"] == ["relay"], name  # the test servers start alone


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/services up prometheus installs it")
    done = subprocess.run(
        [promtool, "check", "config", str(REPO / "deploy" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.anyio
async def test_the_relay_environment_is_understood(postgres_url: str, tmp_path: Path) -> None:
    env = {str(k): str(v) for k, v in services()["relay"]["environment"].items()}
    env["OUTBOXKIT_PG_DSN"] = postgres_url
    async with scratch_schema(postgres_url, "compose") as schema:
        env["OUTBOXKIT_PG_SCHEMA"] = schema
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                cli_argv("migrate"),
                cwd=tmp_path,
                env={**clean_env(), **env},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
    assert done.returncode == 0, done.stderr
