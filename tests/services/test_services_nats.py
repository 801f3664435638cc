"""Smoke test: JetStream stores and acknowledges a message, and drops a duplicate Nats-Msg-Id."""

from __future__ import annotations

import uuid

import nats
import pytest

pytestmark = pytest.mark.anyio


async def test_jetstream_publish_ack(nats_url: str) -> None:
    name = f"SMOKE_{uuid.uuid4().hex}"
    subject = f"smoke.{uuid.uuid4().hex}"
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        await js.add_stream(name=name, subjects=[subject])
        try:
            msg_id = str(uuid.uuid4())
            ack = await js.publish(subject, b"payload", headers={"Nats-Msg-Id": msg_id})
            assert (ack.stream, ack.seq, ack.duplicate) == (name, 1, None)
            again = await js.publish(subject, b"payload", headers={"Nats-Msg-Id": msg_id})
            assert (again.seq, again.duplicate) == (1, True)
            second = await js.publish(subject, b"other")
            assert second.seq == 2
        finally:
            await js.delete_stream(name)
    finally:
        await nc.close()
