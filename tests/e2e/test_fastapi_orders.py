"""examples/fastapi_orders: the app driven through httpx against the real PostgreSQL, the real
``outboxkit relay`` to Kafka, and a consumer that sees the event; its docker-compose services."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import yaml

from tests.support import REPO
from tests.support.kafka import consume_records, topics
from tests.support.postgres import outbox_schema

pytestmark = pytest.mark.anyio

GOOD_CARD = "4242424242424242"
RELAY = [sys.executable, "-m", "outboxkit.cli", "relay", "--store", "pg", "--publisher", "kafka"]


@pytest.fixture
async def orders_app(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The example app on a fresh migrated schema (as its relay would be configured), its
    lifespan running, and an httpx client on it (ASGITransport)."""
    async with outbox_schema(postgres_url, 4) as schema:
        monkeypatch.setenv("OUTBOXKIT_PG_DSN", postgres_url)
        monkeypatch.setenv("OUTBOXKIT_PG_SCHEMA", schema)
        monkeypatch.delenv("DATABASE_URL", raising=False)
        from examples.fastapi_orders import app as module

        monkeypatch.setattr(module, "outbox", type(module.outbox)())  # reads this schema
        async with module.app.router.lifespan_context(module.app):
            transport = httpx.ASGITransport(app=module.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
                yield client, schema


async def _rows(dsn: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_an_order_commits_with_its_event_and_a_declined_payment_leaves_neither(
    orders_app: tuple[httpx.AsyncClient, str], postgres_url: str
) -> None:
    client, schema = orders_app
    created = await client.post(
        "/orders", json={"customer": "ada", "total_cents": 1200, "card": GOOD_CARD}
    )
    declined = await client.post(
        "/orders", json={"customer": "bob", "total_cents": 900, "card": "4000000000000002"}
    )

    assert created.status_code == 201, created.text
    assert declined.status_code == 402
    assert declined.json() == {"detail": "card ending 0002 declined"}
    orders = await _rows(postgres_url, f"SELECT id::text, customer FROM {schema}.orders")
    events = await _rows(
        postgres_url, f"SELECT aggregate_id, event_type, payload FROM {schema}.outbox"
    )
    assert [(o["id"], o["customer"]) for o in orders] == [(created.json()["id"], "ada")]
    assert [(e["aggregate_id"], e["event_type"]) for e in events] == [
        (created.json()["id"], "OrderCreated")
    ]


@pytest.mark.slow
async def test_the_relay_publishes_the_event_to_kafka_and_a_consumer_sees_it(
    orders_app: tuple[httpx.AsyncClient, str], postgres_url: str, kafka_bootstrap: str
) -> None:
    client, schema = orders_app
    async with topics(kafka_bootstrap, prefix="okt-orders") as (topic,):
        created = await client.post(
            "/orders", json={"customer": "ada", "total_cents": 1200, "card": GOOD_CARD}
        )
        declined = await client.post(
            "/orders", json={"customer": "bob", "total_cents": 900, "card": "4000000000000002"}
        )
        assert (created.status_code, declined.status_code) == (201, 402)

        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        env |= {
            "OUTBOXKIT_PG_DSN": postgres_url,
            "OUTBOXKIT_PG_SCHEMA": schema,
            "OUTBOXKIT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "OUTBOXKIT_KAFKA_TOPIC_TEMPLATE": topic,
        }
        relayed = await anyio.run_process(
            [*RELAY, "--exit-when-idle"], env=env, cwd=REPO, check=False
        )
        assert relayed.returncode == 0, relayed.stderr.decode()

        records = await consume_records(kafka_bootstrap, topic, count=2, timeout=10)
    assert len(records) == 1, "exactly the committed order's event"
    (record,) = records
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["outboxkit-event-type"] == "OrderCreated"
    assert record.key == created.json()["id"].encode()
    assert json.loads(record.value or b"") == {
        "order_id": created.json()["id"],
        "customer": "ada",
        "total_cents": 1200,
    }
    pending = await _rows(postgres_url, f"SELECT count(*) AS n FROM {schema}.outbox")
    assert pending[0]["n"] == 0


def test_the_compose_file_runs_the_service_next_to_its_relay() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    orders, relay = services["orders"], services["orders-relay"]
    assert orders["build"]["dockerfile"] == "examples/fastapi_orders/Dockerfile"
    assert (REPO / orders["build"]["dockerfile"]).is_file()
    assert relay["build"]["dockerfile"] == "deploy/Dockerfile"
    for key in ("OUTBOXKIT_PG_DSN", "OUTBOXKIT_PG_SCHEMA"):
        assert orders["environment"][key] == relay["environment"][key], key
    assert relay["environment"]["OUTBOXKIT_PUBLISHER"] == "kafka"
    assert services["orders-migrate"]["entrypoint"] == ["outboxkit", "migrate"]
    for name in ("orders", "orders-relay"):
        assert services[name]["depends_on"]["orders-migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert "postgres" in services and "kafka" in services
