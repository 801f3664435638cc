"""End to end: ``outboxkit relay --store mongodb --publisher kafka`` with 3 relay processes,
concurrent writers on shared aggregate documents, and one relay killed (SIGKILL) mid-run.
At a Kafka consumer: no loss, first deliveries of each aggregate in its commit order (one
partition per aggregate), duplicates only from the killed relay's shards, and counted.

On a server that loses concurrent updates of one document (FerretDB 1.x, whatever its
backend: its update is read, modify, write back without a version check) the embedded
outbox cannot keep its no-loss promise under concurrency, and the test adapts, saying so in
its output: the writes of one document are serialised (documents stay concurrent), and the
relays start once the writers are done, because the relay's acks (``$pullAll``) would race
the writers' ``$push`` on the same documents just the same. On MongoDB (docker-compose) the
writers are fully concurrent and run while the relays publish.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import anyio
import pytest
from outboxkit_mongodb import MongoSettings, MongoStore

from outboxkit.sharding import shard_of
from tests.e2e.checks import Delivery, verdict
from tests.e2e.mongo_writers import MongoWriters, loses_concurrent_updates, order_writers
from tests.e2e.readers import TopicReader
from tests.e2e.relays import RelayProcess, mongo_relays
from tests.support.kafka import topics
from tests.support.mongodb import mongo_database

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SHARDS = 8
RELAYS = 3
WRITERS = 4
DOCUMENTS = 50
MESSAGES = 2000
BATCH = 100
PER_WRITE = (2, 6)  # messages per write: FerretDB takes ~10-20 ms per update
LEASE_TTL = 2.0
KILL_AFTER = 0.3  # share of the messages delivered when one relay is killed


def duplicated(deliveries: list[Delivery]) -> list[Delivery]:
    """The deliveries of a message id already delivered before."""
    seen: set[str] = set()
    out = []
    for d in deliveries:
        if d.message_id in seen:
            out.append(d)
        seen.add(d.message_id)
    return out


async def progress(t0: float, writers: MongoWriters, reader: TopicReader) -> None:
    """A line every 2 s: messages written and delivered (first deliveries)."""
    while True:
        await anyio.sleep(2)
        print(
            f"  {time.monotonic() - t0:5.1f}s: written {writers.count}, delivered {len(reader.ids)}"
        )


async def wait_until_leased(store: MongoStore, owners: set[str], timeout: float) -> None:
    """Until every shard is leased, to a live relay, and each relay holds at least one."""
    with anyio.fail_after(timeout):
        while True:
            leases = [x for x in await store.leases() if (x.expires_in or 0) > 0]
            held = {x.owner for x in leases}
            if len(leases) == SHARDS and held == owners:
                return
            await anyio.sleep(0.1)


async def test_relays_survive_a_kill_with_concurrent_writers(
    mongodb_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    async with (
        mongo_database(mongodb_url, prefix="okt_e2e") as db,
        topics(kafka_bootstrap, partitions=6, prefix="okt-e2e") as (topic,),
    ):
        lossy = await loses_concurrent_updates(db)
        settings = MongoSettings(
            url=mongodb_url,
            database=db.name,
            collections=["orders"],
            shard_count=SHARDS,
            poll_interval=0.05,
        )
        store = MongoStore(settings)
        await store.migrate()
        await store.open()
        assert store.server is not None
        print(f"server: {store.server.description}; concurrent same-document updates lost: {lossy}")
        if lossy:
            print(
                "  -> writes of one document serialised (documents stay concurrent), and the "
                "relays start after the writers, so no ack races a write on this server"
            )

        writers = await order_writers(db, SHARDS, topic, DOCUMENTS, serialize=lossy)
        relays = mongo_relays(
            RELAYS,
            tmp_path,
            mongodb_url,
            db.name,
            "kafka",
            lease_ttl=LEASE_TTL,
            batch_size=BATCH,
            backoff_initial="0.1",
            backoff_max="1",
            kafka_bootstrap_servers=kafka_bootstrap,
        )
        reader = TopicReader(kafka_bootstrap, topic)
        victim: RelayProcess | None = None
        codes: dict[str, int | None] = {}
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(reader.run)
                tg.start_soon(progress, t0, writers, reader)

                if lossy:
                    await writers.run(MESSAGES, WRITERS, PER_WRITE)
                    for r in relays:
                        r.start()
                else:
                    for r in relays:
                        r.start()
                    await wait_until_leased(store, {r.name for r in relays}, 30)
                    tg.start_soon(writers.run, MESSAGES, WRITERS, PER_WRITE)

                # Kill the relay holding the most shards once a share of the messages is out.
                with anyio.fail_after(30):
                    while len(reader.ids) < KILL_AFTER * MESSAGES:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                leases = [x for x in await store.leases() if (x.expires_in or 0) > 0]
                victim = max(relays, key=lambda r: sum(x.owner == r.name for x in leases))
                victim_shards = {x.shard for x in leases if x.owner == victim.name}
                delivered_at_kill = len(reader.ids)
                victim.kill()
                killed_at = time.monotonic()
                print(
                    f"SIGKILL {victim.name} (shards {sorted(victim_shards)}) after "
                    f"{delivered_at_kill} of {MESSAGES} messages, "
                    f"{time.monotonic() - t0:.1f}s into the test"
                )

                with anyio.fail_after(60):
                    while writers.count < MESSAGES:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                assert writers.count == MESSAGES
                await reader.wait_for(writers.ids, timeout=40, settle=LEASE_TTL)
                took = time.monotonic() - killed_at
                tg.cancel_scope.cancel()

            survivors = [r for r in relays if r is not victim]
            assert all(r.running for r in survivors), "a surviving relay exited"
            assert (await store.status()).pending == 0
        finally:
            codes = {r.name: r.stop() for r in relays if r is not victim}
            await store.close()
            if any(code != 0 for code in codes.values()):
                for r in relays:
                    print(f"---- {r.name} ----\n{r.log()[-4000:]}")

        result = verdict(reader.deliveries, writers.committed)
        dup_shards = {shard_of(d.aggregate_id, SHARDS) for d in duplicated(reader.deliveries)}
        # Takeovers: the victim's shards, and every lease a relay lost because its heartbeat
        # came too late (FerretDB can take over a second for the lease upkeep under load).
        losses = [shard for r in relays for shard in r.lost_leases()]
        # The victim's own log also names shards whose lease had just expired in the database
        # (slow upkeep) while it still published their batch: taken over without a "lost".
        assert victim is not None
        expired = victim.held_shards() - victim_shards
        taken_over = victim_shards | expired | set(losses)
        print(
            f"{MESSAGES} messages, {DOCUMENTS} documents, {WRITERS} writers, {RELAYS} relays: "
            f"{result.summary()}; duplicates in shards {sorted(dup_shards)}; lease losses "
            f"besides the kill: {len(losses)} (shards {sorted(set(losses))}); the victim's "
            f"expired leases: {sorted(expired)}; all delivered "
            f"{took:.1f}s after the kill; test took {time.monotonic() - t0:.1f}s"
        )
        assert not result.lost, result.summary()
        assert not result.unexpected, result.summary()
        assert not result.order_violations, result.summary()
        # Duplicates only around takeovers: at most one claimed batch in flight per takeover.
        if not dup_shards <= taken_over:
            for r in relays:
                events = re.findall(r".*lease (?:acquired|released|lost|upkeep).*", r.log())
                print(f"---- {r.name}: lease events ----", *events, sep="\n")
        assert dup_shards <= taken_over, (
            f"duplicates in shards {sorted(dup_shards - taken_over)}, which were neither the "
            f"killed relay's {sorted(victim_shards)} nor taken over after a lost lease"
        )
        takeovers = len(victim_shards) + len(expired) + len(losses)
        assert result.duplicates <= BATCH * takeovers, result.summary()
        assert codes == {r.name: 0 for r in survivors}, f"SIGTERM exit codes {codes}"
