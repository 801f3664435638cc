"""A real Prometheus scrapes a real relay (pg -> kafka) during a run; its numbers agree with
what a consumer read.

The relay runs as ``outboxkit relay --http-port 0``; the test writes a file_sd target for it
into the folder of the Prometheus that ``scripts/services`` runs (scrape every second), then
asks Prometheus' HTTP API. A ``run`` label set in the target keeps tests apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from outboxkit.testing import unique_name
from tests.support import eventually
from tests.support.kafka import fresh_topic
from tests.support.observability import (
    Relay,
    TopicReader,
    pg_outbox,
    prometheus_targets_dir,
    prometheus_value,
    relay_env,
    write_messages,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOTAL = 3000


async def test_prometheus_sees_what_the_consumer_read(
    postgres_url: str, kafka_bootstrap: str, prometheus_url: str, tmp_path: Path
) -> None:
    targets = prometheus_targets_dir(prometheus_url)
    run = unique_name("run")
    target_file = targets / f"{run}.json"
    async with pg_outbox(postgres_url) as schema, fresh_topic(kafka_bootstrap, 3) as topic:
        env = relay_env(postgres_url, schema, kafka_bootstrap, batch_size=100)
        relay = Relay(env, tmp_path / "relay.log", "--http-port", "0", "--check-interval", "1")
        relay.start()
        reader = TopicReader(kafka_bootstrap, topic)
        try:
            port = await relay.port()
            target_file.write_text(
                json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"run": run}}])
            )
            selector = f'{{run="{run}"}}'

            def value(metric: str) -> float | None:
                return prometheus_value(prometheus_url, metric + selector)

            await eventually(lambda: value("outboxkit_ready") == 1, 30, "relay scraped, ready")
            async with anyio.create_task_group() as tg:
                await tg.start(reader.run)
                ids = set(await write_messages(postgres_url, schema, topic, TOTAL))
                await eventually(lambda: ids <= reader.ids, 60, "every message read")
                await anyio.sleep(1)  # late duplicates, if any
                received = len(reader.records)

                def published() -> bool:
                    return value("outboxkit_messages_published_total") == received

                await eventually(published, 30, f"Prometheus sees {received} published")
                assert value("outboxkit_publish_lag_seconds_count") == received
                assert value("outboxkit_batch_size_messages_sum") == received
                await eventually(
                    lambda: value("outboxkit_pending_messages") == 0, 30, "pending back to 0"
                )
                assert value("outboxkit_pending_estimated") == 0
                assert value("outboxkit_dead_letters") == 0
                assert value("outboxkit_blocked_aggregates") == 0
                assert value("outboxkit_owned_shards") == 8
                lag_p99 = prometheus_value(
                    prometheus_url,
                    f"histogram_quantile(0.99, outboxkit_publish_lag_seconds_bucket{selector})",
                )
                assert lag_p99 is not None and 0 < lag_p99 < 60
                tg.cancel_scope.cancel()
        finally:
            target_file.unlink(missing_ok=True)
            code = relay.stop()
        assert code == 0, relay.log_path.read_text()
        assert len(ids) == TOTAL
