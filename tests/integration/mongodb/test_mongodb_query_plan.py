"""The claim query goes through the sparse claim index, never a collection scan (MongoDB).

FerretDB 1.x creates the index but its plans ignore it. On its PostgreSQL backend (the one
``scripts/services`` runs) the claim's equality filters run inside PostgreSQL
(``filterPushdown: true``), as a filter over the table; on its SQLite backend nothing but
``_id`` is pushed down (``filterPushdown: false``) and every document is decoded. The test
asserts what each server can show and prints the plan with the server's name.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from outboxkit_mongodb import MongoOutbox, MongoStore
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit import Message

pytestmark = pytest.mark.anyio


def stages(plan: Any) -> list[str]:
    """Every ``stage`` name and index name in a MongoDB explain tree."""
    found: list[str] = []
    if isinstance(plan, dict):
        for key, value in plan.items():
            if key in ("stage", "indexName") and isinstance(value, str):
                found.append(value)
            found += stages(value)
    elif isinstance(plan, list):
        for item in plan:
            found += stages(item)
    return found


async def test_claim_query_uses_the_claim_index(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    orders = mongo_db["orders"]
    for i in range(200):
        agg = f"o{i}"
        messages = [Message.create(aggregate_type="o", aggregate_id=agg, event_type="E")]
        await outbox.update_one(orders, {"_id": agg}, {"$set": {"i": i}}, messages, upsert=True)
    await orders.insert_many([{"_id": f"quiet{i}"} for i in range(200)])

    index = store.fields.claim_index_name
    info = await orders.index_information()
    assert info[index]["key"] == store.fields.claim_index

    outboxes = store._outboxes
    query = (
        orders.find(outboxes.claim_filter(1, datetime.now(UTC)), {"outbox": 1})
        .sort(outboxes.claim_sort)
        .limit(100)
    )
    explain = await query.explain()
    assert store.server is not None
    print(f"server: {store.server.description}")
    print(json.dumps(explain.get("queryPlanner"), default=str, indent=1)[:2000])
    if "FerretDB" in store.server.name:
        plan = json.dumps(explain["queryPlanner"])
        if explain["filterPushdown"]:
            fields = store.fields
            assert fields.shard in plan and fields.pending in plan, plan
            print("FerretDB filters the claim inside PostgreSQL (shard and pending pushed down)")
        else:
            assert "SCAN" in plan, plan
            print("FerretDB runs the claim as an SQLite table scan: it ignores secondary indexes")
    else:
        assert info[index]["sparse"] is True  # FerretDB drops the option silently
        winning = stages(explain["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in winning and index in winning, winning
        assert "COLLSCAN" not in winning, winning
