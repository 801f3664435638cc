"""What the observability tests share: a scratch pg outbox and Kafka topic, relay processes
with ``--http-port``, an HTTP client and Prometheus' API (a TCP proxy is in ``proxy.py``)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from outboxkit.message import HEADER_ID, Message
from outboxkit.testing import unique_name
from tests.support import eventually
from tests.support.kafka import consumer_from_start
from tests.support.postgres import pg_connection
from tests.support.processes import ChildProcess

# -- postgres and kafka ------------------------------------------------------------------


@asynccontextmanager
async def pg_outbox(dsn: str, shards: int = 8) -> AsyncIterator[str]:
    """A fresh migrated outbox schema, dropped afterwards."""
    schema = unique_name("okt_obs")
    try:
        store = PostgresStore(PostgresSettings(dsn=dsn, schema=schema, shard_count=shards))
        await store.migrate()
        await store.close()
        yield schema
    finally:
        with anyio.CancelScope(shield=True):
            async with pg_connection(dsn) as conn:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def write_messages(
    dsn: str, schema: str, topic: str, count: int, aggregates: int = 20, per_tx: int = 50
) -> list[str]:
    """Commit ``count`` messages of ``aggregates`` aggregates; return their ids."""
    outbox = PostgresOutbox(schema=schema)
    ids: list[str] = []
    async with pg_connection(dsn) as conn:
        for start in range(0, count, per_tx):
            batch = [
                Message.create(
                    aggregate_type="order",
                    aggregate_id=f"agg-{n % aggregates}",
                    event_type="order.changed",
                    payload={"n": n},
                    topic=topic,
                )
                for n in range(start, min(count, start + per_tx))
            ]
            async with conn.transaction():
                await outbox.add_many(conn, batch)
            ids += [str(m.id) for m in batch]
    return ids


class TopicReader:
    """Reads a topic from its start in the background; ``ids`` holds the message ids read."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.ids: set[str] = set()
        self.records: list[Any] = []

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        consumer = consumer_from_start(self.bootstrap, self.topic)
        await consumer.start()
        task_status.started()
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        self.records.append(record)
                        headers = {k: v.decode() for k, v in record.headers}
                        self.ids.add(headers[HEADER_ID])
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.stop()


# -- relay processes -----------------------------------------------------------------------


def relay_env(dsn: str, schema: str, bootstrap: str, **more: object) -> dict[str, str]:
    """``OUTBOXKIT_*`` settings of a pg -> kafka relay (plus ``more``)."""
    settings: dict[str, object] = {
        "pg_dsn": dsn,
        "pg_schema": schema,
        "kafka_bootstrap_servers": bootstrap,
        "kafka_request_timeout_ms": 3000,
        "kafka_delivery_timeout_ms": 5000,
        "lease_ttl": 3,
        "poll_interval": 0.5,
        **more,
    }
    return {f"OUTBOXKIT_{k.upper()}": str(v) for k, v in settings.items()}


class Relay(ChildProcess):
    """``python -m outboxkit.cli relay --store pg --publisher kafka`` with JSON logs to a file
    and ``--http-port 0``: :attr:`port` is read from its log line."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *extra: str) -> None:
        argv = [sys.executable, "-m", "outboxkit.cli", "relay", "--store", "pg"]
        argv += ["--publisher", "kafka", "--log-format", "json", *extra]
        super().__init__(argv, env, log_path)

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (other lines are skipped)."""
        result = []
        for line in self.log_path.read_text().splitlines():
            with suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    result.append(entry)
        return result

    async def port(self, timeout: float = 30) -> int:
        def find() -> int | None:
            self.check_running()
            for entry in self.lines():
                if "http_port" in entry:
                    return int(entry["http_port"])
            return None

        found: int = await eventually(find, timeout, "the relay's HTTP port in its log")
        return found

    def check_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"relay exited with {self.process.returncode}:\n{self.log_path.read_text()}"
            )

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET (any status, no exception for 503)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def aget(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    return await anyio.to_thread.run_sync(http_get, url, timeout)


# -- prometheus ----------------------------------------------------------------------------


def prometheus_targets_dir(prometheus_url: str) -> Path:
    """The file_sd folder of the running Prometheus (from its loaded configuration)."""
    status, body = http_get(f"{prometheus_url}/api/v1/status/config")
    assert status == 200, body
    config = json.loads(body)["data"]["yaml"]
    match = re.search(r"^\s*-\s*(\S+)/\*\.json\s*$", config, re.MULTILINE)
    assert match, f"no file_sd_configs folder in Prometheus' configuration:\n{config}"
    return Path(match.group(1))


def prometheus_query(prometheus_url: str, query: str) -> list[dict[str, Any]]:
    """The result vector of an instant query."""
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = http_get(url)
    assert status == 200, body
    data = json.loads(body)["data"]
    assert data["resultType"] == "vector", data
    result: list[dict[str, Any]] = data["result"]
    return result


def prometheus_value(prometheus_url: str, query: str) -> float | None:
    """The single value of ``query``, None if it has no result yet."""
    result = prometheus_query(prometheus_url, query)
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])
