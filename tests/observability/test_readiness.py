"""``/readyz`` follows Kafka's answers; ``/healthz`` does not.

The shared Kafka must keep serving the other tests, so it is never paused: the relay reaches
it through a proxy (``tests/support/proxy.py``) that falls silent to simulate a broker that
hangs, then forwards again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from tests.support.observability import Relay, aget, eventually, pg_outbox, relay_env
from tests.support.proxy import KafkaProxy, TcpProxy, proxy

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_readyz_fails_while_kafka_hangs_and_healthz_stays_up(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    with proxy(KafkaProxy, kafka_bootstrap.split(",")[0]) as kafka:
        async with pg_outbox(postgres_url, shards=4) as schema:
            env = relay_env(postgres_url, schema, kafka.address)
            relay = Relay(env, tmp_path / "relay.log", "--http-port", "0", "--check-interval", "1")
            await hang_and_recover(relay, kafka)


async def hang_and_recover(relay: Relay, kafka: TcpProxy) -> None:
    relay.start()
    try:
        base = f"http://127.0.0.1:{await relay.port()}"

        async def ready() -> bool:
            return (await aget(f"{base}/readyz"))[0] == 200

        async def not_ready() -> bool:
            return (await aget(f"{base}/readyz"))[0] == 503

        await eventually(ready, 30, "/readyz 200 at start")
        kafka.set("silent")
        stalled = time.monotonic()
        await eventually(not_ready, 10, "/readyz 503 while Kafka hangs")
        failed_after = time.monotonic() - stalled
        status, body = await aget(f"{base}/readyz")
        assert status == 503
        problems = json.loads(body)["problems"]
        assert any(p.startswith("publisher:") for p in problems), problems
        for _ in range(5):  # the relay stays alive all along
            assert (await aget(f"{base}/healthz"))[0] == 200
            await anyio.sleep(0.5)
        kafka.set("forwarding")
        await eventually(ready, 30, "/readyz 200 again once Kafka answers")
        assert (await aget(f"{base}/healthz"))[0] == 200
        assert failed_after < 6, f"/readyz failed only {failed_after:.1f}s after the stall"
    finally:
        kafka.set("forwarding")
        relay.stop()
