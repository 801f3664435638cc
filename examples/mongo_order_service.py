"""An order service on MongoDB: each order document carries its own outbox.

``MongoOutbox`` adds the events to the same single-document write as the business change
(``insert_one`` of a new order; ``$set`` + ``$push`` when it is paid), so no multi-document
transaction is needed. ``outboxkit relay --store mongodb`` publishes them afterwards::

    eval "$(scripts/services env)"
    uv run outboxkit migrate --store mongodb --mongodb-url "$OUTBOXKIT_TEST_MONGODB_URL" \\
        --mongodb-collections orders
    uv run python examples/mongo_order_service.py --orders 100
    uv run outboxkit relay --store mongodb --mongodb-url "$OUTBOXKIT_TEST_MONGODB_URL" \\
        --mongodb-collections orders --publisher kafka \\
        --kafka-bootstrap-servers "$OUTBOXKIT_TEST_KAFKA_BOOTSTRAP" --kafka-create-topics

The URL comes from ``--url``, else ``OUTBOXKIT_MONGODB_URL``, else
``OUTBOXKIT_TEST_MONGODB_URL``; the database from ``OUTBOXKIT_MONGODB_DATABASE`` as for
``outboxkit`` itself (default: outboxkit). The writer reads the shard count from the store's
migration, so run ``outboxkit migrate`` first.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio
from outboxkit_mongodb import MongoOutbox
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from outboxkit import Message, uuid7


def order_event(order_id: str, event_type: str, payload: dict[str, Any]) -> Message:
    return Message.create(
        aggregate_type="order",
        aggregate_id=order_id,
        event_type=event_type,
        topic="orders",
        payload={"order_id": order_id, **payload},
    )


async def create_order(
    orders: AsyncCollection[Any], outbox: MongoOutbox, customer: str, total_cents: int
) -> str:
    """Insert the order with its OrderCreated event in one write; return the order id."""
    order_id = str(uuid7())
    event = order_event(order_id, "OrderCreated", {"customer": customer, "total": total_cents})
    document = {"_id": order_id, "customer": customer, "total_cents": total_cents}
    await outbox.insert_one(orders, {**document, "status": "open"}, [event])
    return order_id


async def pay_order(orders: AsyncCollection[Any], outbox: MongoOutbox, order_id: str) -> None:
    """Mark the order paid and record OrderPaid in the same single-document update."""
    await outbox.update_one(
        orders,
        {"_id": order_id},
        {"$set": {"status": "paid"}},
        [order_event(order_id, "OrderPaid", {})],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("OUTBOXKIT_MONGODB_URL")
        or os.environ.get("OUTBOXKIT_TEST_MONGODB_URL"),
        help="MongoDB URL (default: $OUTBOXKIT_MONGODB_URL or $OUTBOXKIT_TEST_MONGODB_URL)",
    )
    parser.add_argument("--orders", type=int, default=10, help="how many orders to create")
    args = parser.parse_args()
    if not args.url:
        parser.error("set --url or OUTBOXKIT_MONGODB_URL (see `scripts/services env`)")
    database = os.environ.get("OUTBOXKIT_MONGODB_DATABASE") or "outboxkit"
    outbox = MongoOutbox()  # reads the shard count from `outboxkit migrate --store mongodb`

    client: AsyncMongoClient[Any] = AsyncMongoClient(args.url)
    try:
        orders = client[database]["orders"]
        for n in range(1, args.orders + 1):
            order_id = await create_order(orders, outbox, f"customer-{n}", 1000 * n)
            if n % 2 == 0:
                await pay_order(orders, outbox, order_id)
            print(f"order {order_id}: written with its events in one document update")
    finally:
        await client.close()


if __name__ == "__main__":
    anyio.run(main)
