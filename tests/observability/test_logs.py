"""``--log-format json`` lines, secrets masked, one rebalance line, summary and final lines."""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from outboxkit.observability.logs import JsonFormatter, TextFormatter
from outboxkit.relay.log import shard_ranges
from tests.support import eventually
from tests.support.kafka import fresh_topic
from tests.support.observability import (
    Relay,
    TopicReader,
    pg_outbox,
    relay_env,
    write_messages,
)

PASSWORD = "s3cret-pw-42"


def _with_password(dsn: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_relay_run_in_json_lines(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with (
        pg_outbox(postgres_url, shards=8) as schema,
        fresh_topic(kafka_bootstrap, 3) as topic,
    ):
        ids = await write_messages(postgres_url, schema, topic, 500)
        env = relay_env(_with_password(postgres_url), schema, kafka_bootstrap)
        env["OUTBOXKIT_KAFKA_SASL_PASSWORD"] = "kafka-" + PASSWORD
        relay = Relay(env, tmp_path / "relay.log", "--exit-when-idle", "--summary-interval", "1")
        relay.start()
        assert relay.process is not None
        reader = TopicReader(kafka_bootstrap, topic)
        code = await _wait(relay)
        text = relay.log_path.read_text()
        assert code == 0, text
    assert PASSWORD not in text
    lines = text.splitlines()
    entries = relay.lines()
    assert len(entries) == len(lines), "every line is a JSON object"
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= entry.keys()
    assert not [e for e in entries if "lease acquired" in e["message"]]
    rebalances = [e for e in entries if e["message"].startswith("rebalance: acquired")]
    assert len(rebalances) == 1, rebalances
    assert rebalances[0]["shards"] == list(range(8))
    assert "[0-7]" in rebalances[0]["message"]
    final = entries[-1]
    assert final["message"].startswith(f"relay {final['instance']} exiting: published 500 ")
    assert final["published"] == 500 == len(ids)
    assert final["reason"] == "nothing pending (exit_when_idle)"
    summaries = [e for e in entries if e["message"].startswith("summary:")]
    if summaries:  # the run may end within a second on a fast machine
        assert {"published", "rate", "lag_avg", "pending"} <= summaries[0].keys()
    del reader


async def _wait(relay: Relay) -> int:
    assert relay.process is not None
    process = relay.process
    await eventually(lambda: process.poll() is not None, 60, "the relay exits when idle")
    return process.returncode


@pytest.mark.anyio
@pytest.mark.slow
async def test_summary_lines_every_interval(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with (
        pg_outbox(postgres_url, shards=2) as schema,
        fresh_topic(kafka_bootstrap, 3) as topic,
    ):
        env = relay_env(postgres_url, schema, kafka_bootstrap)
        relay = Relay(env, tmp_path / "relay.log", "--summary-interval", "1")
        relay.start()
        try:

            def summaries() -> list[dict[str, object]]:
                relay.check_running()
                return [e for e in relay.lines() if e["message"].startswith("summary:")]

            await eventually(lambda: any(e["owned_shards"] == 2 for e in summaries()), 30, "")
            await write_messages(postgres_url, schema, topic, 40)
            await eventually(
                lambda: any(e["published"] == 40 for e in summaries()), 30, "40 in a summary"
            )
        finally:
            code = relay.stop()
    assert code == 0
    entries = relay.lines()
    line = next(e for e in entries if e["message"].startswith("summary:") and e["published"])
    assert line["pending"] is not None and line["lag_avg"] is not None
    assert entries[-1]["reason"] == "SIGTERM"


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("outboxkit.relay", logging.WARNING, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_formatters_mask_dsn_passwords_and_secret_values() -> None:
    dsn = f"postgresql://app:{PASSWORD}@db:5432/app"
    record = _record(f"cannot reach {dsn} with token tok-123456", error=f"at {dsn}", shard=3)
    for formatter in (JsonFormatter(["tok-123456"]), TextFormatter(["tok-123456"])):
        out = formatter.format(record)
        assert PASSWORD not in out and "tok-123456" not in out
        assert "postgresql://app:***@db:5432/app" in out


def test_bad_log_format_in_the_environment_is_one_line_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "outboxkit.cli", "plugins"],
        env={"OUTBOXKIT_LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "outboxkit: error: invalid value 'xml' for OUTBOXKIT_LOG_FORMAT: use one of text, json"
    ]


def test_shard_ranges() -> None:
    assert shard_ranges([5, 0, 1, 2, 7, 8]) == "[0-2, 5, 7-8]"
    assert shard_ranges([]) == "[]"
