"""The transactional outbox on SQLite: no server needed.

Each order row and its events are written in ONE sqlite3 transaction, so an event exists if
and only if the order change committed. The relay (a separate process) then publishes them::

    uv run outboxkit migrate                        # create the outbox in ./outbox.db
    uv run python examples/embedded_demo.py         # place orders (business rows + events)
    uv run outboxkit relay --exit-when-idle         # publish them as JSON lines on stdout

The database file is ``./outbox.db`` (the ``sqlite`` store's default); pass ``--db`` or set
``OUTBOXKIT_SQLITE_PATH`` to use another file, for the relay too.
"""

from __future__ import annotations

import argparse
import os
import sqlite3

from outboxkit import Message, uuid7
from outboxkit.embedded.sqlite.writer import SqliteOutbox

ORDERS_TABLE = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    state TEXT NOT NULL
)
"""


def create_order(
    conn: sqlite3.Connection, outbox: SqliteOutbox, customer: str, total_cents: int
) -> str:
    """Insert an order and its OrderCreated event in one transaction; return the order id."""
    order_id = str(uuid7())
    with conn:  # commits both on success, rolls both back on any error
        conn.execute(
            "INSERT INTO orders (id, customer, total_cents, state) VALUES (?, ?, ?, 'created')",
            (order_id, customer, total_cents),
        )
        outbox.add(
            conn,
            Message.create(
                aggregate_type="order",
                aggregate_id=order_id,
                event_type="OrderCreated",
                topic="orders",
                payload={"order_id": order_id, "customer": customer, "total_cents": total_cents},
            ),
        )
    return order_id


class PaymentDeclined(Exception):
    """The payment failed after the change was written: the transaction rolls back."""


def pay_order(
    conn: sqlite3.Connection, outbox: SqliteOutbox, order_id: str, *, declined: bool = False
) -> None:
    """Mark an order paid and record OrderPaid, atomically; relayed after OrderCreated."""
    with conn:
        conn.execute("UPDATE orders SET state = 'paid' WHERE id = ?", (order_id,))
        outbox.add(
            conn,
            Message.create(
                aggregate_type="order",
                aggregate_id=order_id,
                event_type="OrderPaid",
                topic="orders",
                payload={"order_id": order_id},
            ),
        )
        if declined:
            raise PaymentDeclined(order_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("OUTBOXKIT_SQLITE_PATH", "outbox.db"))
    parser.add_argument("--orders", type=int, default=3, help="how many orders to place")
    args = parser.parse_args()

    conn = sqlite3.connect(args.db)
    conn.execute(ORDERS_TABLE)
    outbox = SqliteOutbox()
    for n in range(1, args.orders + 1):
        order_id = create_order(conn, outbox, customer=f"customer-{n}", total_cents=1000 * n)
        pay_order(conn, outbox, order_id)
        print(f"order {order_id}: OrderCreated and OrderPaid committed with the order row")

    order_id = create_order(conn, outbox, customer="customer-declined", total_cents=500)
    try:
        pay_order(conn, outbox, order_id, declined=True)
    except PaymentDeclined:
        print(f"order {order_id}: payment declined, rolled back: no OrderPaid event exists")
    conn.close()


if __name__ == "__main__":
    main()
