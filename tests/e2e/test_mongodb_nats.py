"""End to end: ``outboxkit relay --store mongodb --publisher nats`` with 2 relay processes,
one of them killed (SIGKILL) mid-run. In the JetStream stream: every message exactly once
(the stream's duplicate window drops what the takeover publishes again, by ``Nats-Msg-Id``)
and each aggregate's messages in its commit order.

As in ``test_mongodb_kafka.py``, on a server that loses concurrent updates of one document
(FerretDB 1.x) the writes of one document are serialised and the relays start after them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from outboxkit_mongodb import MongoSettings, MongoStore

from tests.e2e.checks import verdict
from tests.e2e.mongo_writers import loses_concurrent_updates, order_writers
from tests.e2e.readers import read_deliveries
from tests.e2e.relays import mongo_relays
from tests.support.mongodb import mongo_database
from tests.support.nats import make_stream

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SHARDS = 8
RELAYS = 2
DOCUMENTS = 40
MESSAGES = 1000
BATCH = 50
LEASE_TTL = 2.0


async def test_mongodb_to_nats_survives_a_kill_exactly_once_in_order(
    mongodb_url: str, nats_url: str, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    client = await nats.connect(nats_url)
    js = client.jetstream()
    stream = await make_stream(js, duplicate_window=120.0)
    try:
        async with mongo_database(mongodb_url, prefix="okt_e2e") as db:
            lossy = await loses_concurrent_updates(db)
            store = MongoStore(
                MongoSettings(
                    url=mongodb_url, database=db.name, collections=["orders"], shard_count=SHARDS
                )
            )
            await store.migrate()
            await store.open()
            writers = await order_writers(
                db, SHARDS, stream.subject("orders"), DOCUMENTS, serialize=lossy
            )
            relays = mongo_relays(
                RELAYS,
                tmp_path,
                mongodb_url,
                db.name,
                "nats",
                lease_ttl=LEASE_TTL,
                batch_size=BATCH,
                nats_servers=nats_url,
                nats_stream=stream.name,
            )
            try:
                if lossy:
                    await writers.run(MESSAGES, 4, (2, 6))
                for r in relays:
                    r.start()
                async with anyio.create_task_group() as tg:
                    if not lossy:
                        tg.start_soon(writers.run, MESSAGES, 4, (2, 6))
                    with anyio.fail_after(60):
                        while await stored(js, stream.name) < MESSAGES // 3:  # noqa: ASYNC110
                            await anyio.sleep(0.05)
                    relays[0].kill()
                    killed_at = len(writers.ids), await stored(js, stream.name)
                with anyio.fail_after(90):
                    while (await store.status()).pending or writers.count < MESSAGES:  # noqa: ASYNC110
                        await anyio.sleep(0.1)
                assert relays[1].running, "the surviving relay exited"
            finally:
                codes = [r.stop() for r in relays[1:]]
                await store.close()
            deliveries = await read_deliveries(js, stream.name, stream.wildcard)
            result = verdict(deliveries, writers.committed)
            print(
                f"server {store.server.description if store.server else '?'}, concurrent "
                f"same-document updates lost: {lossy}; SIGKILL relay-0 with {killed_at[1]} of "
                f"{killed_at[0]} written messages in the stream; {result.summary()}; "
                f"{time.monotonic() - t0:.1f}s"
            )
            assert result.ok, result.summary() + "\n" + relays[1].log()[-3000:]
            assert codes == [0]
    finally:
        await js.delete_stream(stream.name)
        await client.close()


async def stored(js: Any, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.messages)
