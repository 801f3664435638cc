"""Smoke test: JetStream stores and acknowledges a message, and drops a duplicate Nats-Msg-Id."""

from __future__ import annotations

import uuid

import nats
import pytest

from tests.support.nats import scratch_stream

pytestmark = pytest.mark.anyio


async def test_jetstream_publish_ack(nats_url: str) -> None:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        async with scratch_stream(js) as stream:
            subject = stream.subject("smoke")
            msg_id = str(uuid.uuid4())
            ack = await js.publish(subject, b"payload", headers={"Nats-Msg-Id": msg_id})
            assert (ack.stream, ack.seq, ack.duplicate) == (stream.name, 1, None)
            again = await js.publish(subject, b"payload", headers={"Nats-Msg-Id": msg_id})
            assert (again.seq, again.duplicate) == (1, True)
            second = await js.publish(subject, b"other")
            assert second.seq == 2
    finally:
        await nc.close()
