"""An order service on PostgreSQL: each order and its OrderCreated event in ONE transaction.

The event row is written by ``PostgresOutbox.add`` on the service's own asyncpg connection,
inside the transaction that inserts the order, so it exists if and only if the order commits.
``outboxkit relay --store pg --publisher kafka`` publishes it afterwards to topic ``orders``
(``--kafka-create-topics`` creates that topic if the cluster does not auto-create topics)::

    eval "$(scripts/services env)"
    uv run outboxkit migrate --store pg --pg-dsn "$OUTBOXKIT_TEST_POSTGRES_URL"
    uv run python examples/order_service.py --orders 100
    uv run outboxkit relay --store pg --pg-dsn "$OUTBOXKIT_TEST_POSTGRES_URL" \\
        --publisher kafka --kafka-bootstrap-servers "$OUTBOXKIT_TEST_KAFKA_BOOTSTRAP" \\
        --kafka-create-topics --exit-when-idle

The service creates its ``orders`` table if it is missing. The DSN comes from ``--dsn``, else
``OUTBOXKIT_PG_DSN``, else ``OUTBOXKIT_TEST_POSTGRES_URL``; the schema of both the outbox and
the ``orders`` table from ``--schema``, else ``OUTBOXKIT_PG_SCHEMA`` (as for ``outboxkit``
itself), else ``public``.
"""

from __future__ import annotations

import argparse
import os
from uuid import UUID

import anyio
import asyncpg
from outboxkit_postgres import PostgresOutbox

from outboxkit import Message, uuid7

ORDERS_TABLE = """
CREATE TABLE IF NOT EXISTS orders (
    id uuid PRIMARY KEY,
    customer text NOT NULL,
    total_cents bigint NOT NULL CHECK (total_cents > 0),
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


class OrderService:
    """Creates orders; every change is recorded as an event in the same transaction."""

    def __init__(self, pool: asyncpg.Pool, outbox: PostgresOutbox) -> None:
        self._pool = pool
        self._outbox = outbox

    async def create_order(self, customer: str, total_cents: int) -> UUID:
        """Insert the order and its OrderCreated event atomically; return the order id."""
        order_id = uuid7()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO orders (id, customer, total_cents) VALUES ($1, $2, $3)",
                order_id,
                customer,
                total_cents,
            )
            await self._outbox.add(
                conn,
                Message.create(
                    aggregate_type="order",
                    aggregate_id=order_id,
                    event_type="OrderCreated",
                    topic="orders",
                    payload={
                        "order_id": str(order_id),
                        "customer": customer,
                        "total_cents": total_cents,
                    },
                ),
            )
        return order_id


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("OUTBOXKIT_PG_DSN") or os.environ.get("OUTBOXKIT_TEST_POSTGRES_URL"),
        help="PostgreSQL DSN (default: $OUTBOXKIT_PG_DSN or $OUTBOXKIT_TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--schema",
        default=os.environ.get("OUTBOXKIT_PG_SCHEMA") or "public",
        help="schema of the outbox and of the orders table (default: $OUTBOXKIT_PG_SCHEMA "
        "or public; the outbox must be migrated there)",
    )
    parser.add_argument("--orders", type=int, default=10, help="how many orders to create")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("set --dsn or OUTBOXKIT_PG_DSN (see `scripts/services env`)")

    outbox = PostgresOutbox(schema=args.schema)  # validates the schema name
    # Unqualified names (the orders table) resolve in the outbox's schema.
    settings = {"search_path": args.schema}
    pool = await asyncpg.create_pool(args.dsn, min_size=1, max_size=4, server_settings=settings)
    try:
        await pool.execute(ORDERS_TABLE)
        service = OrderService(pool, outbox)
        for n in range(1, args.orders + 1):
            order_id = await service.create_order(f"customer-{n}", 1000 * n)
            print(f"order {order_id}: committed with its OrderCreated event")
        try:
            await service.create_order("nobody", 0)  # violates the CHECK: nothing is written
        except asyncpg.CheckViolationError:
            print("order with total 0 rejected: transaction rolled back, no event written")
    finally:
        await pool.close()


if __name__ == "__main__":
    anyio.run(main)
