"""The FastStream middleware on a real Kafka broker with the Postgres inbox: a re-sent
message reaches the handler once; a record outboxkit did not write goes to the error handler
and changes nothing."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from faststream import Context, ExceptionMiddleware
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from outboxkit_postgres import PostgresInbox

from outboxkit.inbox import InboxMessage, UnreadableMessageError
from outboxkit.inbox.faststream import CONNECTION, MESSAGE, InboxMiddleware
from outboxkit.message import Message, broker_headers
from tests.inbox.inbox_support import kafka_topic, scratch_schema, wait_for

pytestmark = pytest.mark.anyio


def _record(message: Message) -> dict[str, Any]:
    headers = [(k, v.encode()) for k, v in broker_headers(message)]
    headers.append(("content-type", message.content_type.encode()))
    return {"value": message.payload, "key": message.aggregate_id.encode(), "headers": headers}


async def test_the_middleware_applies_each_message_once(
    postgres_url: str, kafka_bootstrap: str
) -> None:
    async with (
        kafka_topic(kafka_bootstrap, partitions=1) as topic,
        scratch_schema(postgres_url) as scratch,
    ):
        conn = await scratch.connect()
        await conn.execute(f"CREATE TABLE {scratch.schema}.totals (id text PRIMARY KEY, n int)")
        pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2)
        errors: list[str] = []
        handled: list[str] = []
        exceptions = ExceptionMiddleware()

        @exceptions.add_handler(UnreadableMessageError)
        async def unreadable(exc: UnreadableMessageError) -> None:
            errors.append(str(exc))

        inbox = PostgresInbox(schema=scratch.schema)
        broker = KafkaBroker(
            kafka_bootstrap,
            middlewares=[exceptions, InboxMiddleware(connect=pool.acquire, process=inbox.process)],
        )

        @broker.subscriber(
            topic, group_id=f"{topic}-g", auto_offset_reset="earliest", ack_policy=AckPolicy.ACK
        )
        async def on_event(
            body: dict[str, Any],
            conn: asyncpg.Connection = Context(CONNECTION),  # noqa: B008
            message: InboxMessage = Context(MESSAGE),  # noqa: B008
        ) -> None:
            handled.append(str(message.id))
            await conn.execute(
                f"INSERT INTO {scratch.schema}.totals VALUES ($1, $2) ON CONFLICT (id) "
                "DO UPDATE SET n = totals.n + EXCLUDED.n",
                message.aggregate_id,
                body["amount"],
            )

        events = [
            Message.create(
                aggregate_type="a",
                aggregate_id="acc",
                event_type="credited",
                payload={"amount": n},
                topic=topic,
            )
            for n in (1, 10)
        ]
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for record in [_record(events[0]), _record(events[1]), _record(events[0])]:
                await producer.send_and_wait(topic, **record)
            await producer.send_and_wait(topic, value=b'{"amount": 100}', key=b"acc")
            await producer.send_and_wait(topic, **_record(events[1]))
        finally:
            await producer.stop()
        await broker.start()
        try:

            async def all_seen() -> bool:
                return len(errors) == 1 and len(handled) == 2

            await wait_for(all_seen, 30, "2 handled messages and 1 error")
            await anyio.sleep(1)  # the duplicates after them must not reach the handler
        finally:
            await broker.stop()
            await pool.close()
        total = await conn.fetchval(f"SELECT n FROM {scratch.schema}.totals WHERE id = 'acc'")
        await conn.close()
        assert handled == [str(events[0].id), str(events[1].id)]
        assert total == 11
        assert "no outboxkit headers" in errors[0] and f"{topic}[0]@3" in errors[0]
