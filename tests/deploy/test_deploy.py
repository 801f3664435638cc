"""What deploy/ ships works: the alert rules pass ``promtool check rules``, and the commands
of deploy/Dockerfile (no Docker engine here) build wheels, install them into a fresh virtual
environment outside the checkout, and that installation migrates and relays pg -> kafka."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from outboxkit.testing import unique_name
from tests.support.kafka import consumer_from_start, fresh_topic
from tests.support.observability import pg_outbox, write_messages

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/services up prometheus installs it")
    done = _run([promtool, "check", "rules", str(DEPLOY / "alerts.yml")])
    assert "SUCCESS: 6 rules found" in done.stdout
    docs = (REPO / "docs" / "operations.md").read_text()
    assert (DEPLOY / "alerts.yml").read_text().split("groups:", 1)[1] in docs, (
        "docs/operations.md shows deploy/alerts.yml verbatim"
    )


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def test_kubernetes_grace_period_exceeds_the_drain_timeout() -> None:
    text = (DEPLOY / "kubernetes" / "relay.yaml").read_text()
    grace = int(text.split("terminationGracePeriodSeconds:")[1].split()[0])
    drain = int(text.split('OUTBOXKIT_DRAIN_TIMEOUT, value: "')[1].split('"')[0])
    assert grace > drain
    assert "path: /healthz" in text and "path: /readyz" in text


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_image_steps_install_a_working_relay(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    # the same steps as the Dockerfile, with its paths moved under tmp_path
    assert "uv build --all-packages --wheel --out-dir /wheels" in dockerfile
    assert "uv pip install --python /app/venv/bin/python --find-links /wheels" in dockerfile
    wheels, venv, workdir = tmp_path / "wheels", tmp_path / "venv", tmp_path / "app"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTBOXKIT_", "VIRTUAL_ENV"))}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    uv = _uv()
    await anyio.to_thread.run_sync(
        lambda: _run(
            [*uv, "build", "--all-packages", "--wheel", "--out-dir", str(wheels)], cwd=REPO, env=env
        )
    )
    _run([*uv, "venv", str(venv), "--python", sys.executable], cwd=workdir, env=env)
    install = [*uv, "pip", "install", "--python", str(venv / "bin" / "python")]
    install += ["--find-links", str(wheels), "outboxkit[metrics,otel]"]
    install += ["outboxkit-postgres", "outboxkit-kafka", "outboxkit-nats", "outboxkit-mongodb"]
    await anyio.to_thread.run_sync(lambda: _run(install, cwd=workdir, env=env))
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import outboxkit; print(outboxkit.__file__)"],
        cwd=workdir,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(venv)), f"outboxkit imported from {where}, not the venv"

    async with (
        pg_outbox(postgres_url, shards=4) as schema,
        fresh_topic(kafka_bootstrap, 3) as topic,
    ):
        settings = {
            "OUTBOXKIT_STORE": "pg",
            "OUTBOXKIT_PUBLISHER": "kafka",
            "OUTBOXKIT_PG_DSN": postgres_url,
            "OUTBOXKIT_PG_SCHEMA": unique_name("okt_img"),
            "OUTBOXKIT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "OUTBOXKIT_LOG_FORMAT": "json",
            "OUTBOXKIT_LEASE_TTL": "3",
        }
        settings["OUTBOXKIT_PG_SCHEMA"] = schema  # migrate re-runs on the scratch schema
        run_env = {**env, **settings}
        outboxkit = str(venv / "bin" / "outboxkit")
        _run([outboxkit, "migrate", "--store", "pg"], cwd=workdir, env=run_env)
        ids = set(await write_messages(postgres_url, schema, topic, 200))
        relay = [outboxkit, "relay", "--store", "pg", "--publisher", "kafka", "--exit-when-idle"]
        with anyio.fail_after(120):
            done = await anyio.to_thread.run_sync(lambda: _run(relay, cwd=workdir, env=run_env))
        assert '"published": 200' in done.stderr, done.stderr
        consumer = consumer_from_start(kafka_bootstrap, topic)
        await consumer.start()
        try:
            read: set[str] = set()
            with anyio.fail_after(30):
                while len(read) < len(ids):
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        read |= {dict(r.headers)["outboxkit-id"].decode() for r in records}
        finally:
            await consumer.stop()
        assert read == ids
