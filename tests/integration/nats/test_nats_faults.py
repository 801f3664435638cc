"""Faults on a private nats-server: refused credentials, denied subjects, a server restart
while publishing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import nats
import pytest
from outboxkit_nats import NatsPublisher, NatsSettings

from outboxkit.errors import PublisherUnavailableError
from outboxkit.message import HEADER_AGGREGATE_ID, Message
from outboxkit.protocols import Delivered, Failed
from tests.support.nats import make_stream, read_stream

pytestmark = pytest.mark.anyio

USERS = """
users = [
  {user: relay, password: "right-pass", permissions: {publish: {deny: ["forbidden.>"]}}}
]
"""


@pytest.mark.parametrize(
    ("authorization", "settings", "secret"),
    [
        ('token: "right-token"', {"token": "wrong-token"}, "wrong-token"),
        (USERS, {"user": "relay", "password": "wrong-pass"}, "wrong-pass"),
        (USERS, {"user": "nobody", "password": "right-pass"}, "right-pass"),
    ],
)
async def test_refused_credentials_fail_open_fast_without_leaking_them(
    local_nats: Callable[..., Any], authorization: str, settings: dict[str, str], secret: str
):
    server = local_nats(authorization)
    publisher = NatsPublisher(NatsSettings(servers=[server.url], connect_timeout=10, **settings))

    with anyio.fail_after(5), pytest.raises(PublisherUnavailableError) as caught:
        await publisher.open()

    text = str(caught.value)
    assert "authorization" in text.lower() and server.url in text
    assert secret not in text


async def test_credentials_in_url_are_masked(local_nats: Callable[..., Any]):
    server = local_nats('token: "right-token"')
    url = f"nats://wrong-token@127.0.0.1:{server.port}"

    with pytest.raises(PublisherUnavailableError) as caught:
        await NatsPublisher(NatsSettings(servers=[url], connect_timeout=3)).open()

    assert "wrong-token" not in str(caught.value)
    assert f"nats://***@127.0.0.1:{server.port}" in str(caught.value)


async def test_open_refuses_a_server_without_jetstream(local_nats: Callable[..., Any]):
    server = local_nats(jetstream=False)

    with pytest.raises(PublisherUnavailableError, match=r"JetStream does not answer.*-js"):
        await NatsPublisher(NatsSettings(servers=[server.url])).open()


async def test_denied_subject_is_a_dead_letter_with_the_servers_reason(
    local_nats: Callable[..., Any],
):
    server = local_nats(USERS)
    auth = {"user": "relay", "password": "right-pass"}
    nc = await nats.connect(server.url, **auth)
    await nc.jetstream().add_stream(name="FORBIDDEN", subjects=["forbidden.>"])
    publisher = NatsPublisher(
        NatsSettings(
            servers=[server.url], subject_template="forbidden.{topic}", publish_timeout=1, **auth
        )
    )
    await publisher.open()
    try:
        [outcome] = await publisher.publish(
            [Message.create(aggregate_type="order", aggregate_id="1", event_type="e", payload=1)]
        )
    finally:
        await publisher.close()
        await nc.close()

    assert isinstance(outcome, Failed) and not outcome.retriable
    assert "permissions violation for publish" in outcome.error.lower()


async def test_server_restart_while_publishing_loses_and_duplicates_nothing(
    local_nats: Callable[..., Any],
):
    """Publish continuously like a relay (retrying failed messages in order) while the server
    is stopped and started again: every message ends up in the stream exactly once, in
    per-aggregate order."""
    server = local_nats()
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    stream = await make_stream(js)
    publisher = NatsPublisher(
        NatsSettings(
            servers=[server.url],
            subject_template=stream.prefix + ".{aggregate_type}",
            stream=stream.name,
            publish_timeout=1.0,
            reconnect_time_wait=0.2,
        )
    )
    await publisher.open()
    aggregates, per_aggregate = 40, 100
    total = aggregates * per_aggregate
    pending = {
        f"agg-{a}": [
            Message.create(aggregate_type="t", aggregate_id=f"agg-{a}", event_type="e", payload=n)
            for n in range(per_aggregate)
        ]
        for a in range(aggregates)
    }
    failures: list[str] = []
    quarter_done = anyio.Event()

    async def relay_like() -> None:
        while any(pending.values()):
            if sum(map(len, pending.values())) <= total * 3 // 4:
                quarter_done.set()
            batch = [m for ms in pending.values() for m in ms[:2]]
            outcomes = await publisher.publish(batch)
            for message, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Delivered):
                    assert pending[message.aggregate_id][0] is message
                    pending[message.aggregate_id].pop(0)
                else:
                    assert outcome.retriable, outcome.error
                    failures.append(outcome.error)
            await anyio.sleep(0.05 if failures else 0.005)

    async def restart_server() -> None:
        await quarter_done.wait()
        assert any(pending.values()), "the run ended before the restart: make it longer"
        await anyio.to_thread.run_sync(server.stop)
        await anyio.sleep(1.0)
        await anyio.to_thread.run_sync(server.start)

    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(restart_server)
                tg.start_soon(relay_like)
        stored = await read_stream(js, stream.name, stream.wildcard)
    finally:
        await publisher.close()
        await nc.close()

    assert failures, "the restart should have made some publishes fail"
    ids = [m.headers["Nats-Msg-Id"] for m in stored]
    assert len(ids) == len(set(ids)) == total
    order: dict[str, list[int]] = defaultdict(list)
    for m in stored:
        order[m.headers[HEADER_AGGREGATE_ID]].append(msgspec.json.decode(m.data))
    assert all(ns == list(range(per_aggregate)) for ns in order.values())
