"""Scenario 2: write-path overhead of ``PostgresOutbox.add`` in a business transaction.

``writers`` connections run transactions back to back: a business ``INSERT`` alone, or the
same ``INSERT`` plus ``outbox.add`` of a 1 KiB message (built with ``Message.create`` inside
the loop, as a service would). Rounds alternate (alone, with, alone, with, ...) so background
load hits both alike. Ratio: cost = tx/s alone / tx/s with outbox (bar <= 1.2). Correctness:
every committed business row of the "with" rounds has exactly one outbox row. A third
variant adds without NOTIFY (``notify=False``) to show what the wake-up costs writers.

The bar is evaluated on that definition (one business ``INSERT``). Because a one-statement
transaction makes the outbox's share look as large as it can be, a second, separately
labelled pair of variants uses a more realistic business transaction -- insert an order,
insert its 3 order lines, decrement one stock row (3 round trips) -- alone and with
``outbox.add``; its ratio is reported next to the bar's, without a bar of its own.

A last variant, the floor, adds a second plain ``INSERT`` of a row of the same size (1 KiB
payload, no lock, no sequence, no NOTIFY) instead of ``outbox.add``: what any second
statement in the transaction costs on this machine, the least an outbox written in the same
transaction can cost.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
from outboxkit_postgres import PostgresOutbox

from benchmarks.support.context import Context
from benchmarks.support.correctness import Correctness
from benchmarks.support.pg_backlog import PgBacklog
from benchmarks.support.progress import progress, say
from benchmarks.support.run_results import Bar, Measure
from benchmarks.support.workload import aggregate_id
from outboxkit.message import Message

__all__ = ["run"]

SCENARIO = "2 write path"
BAR = Bar(op="<=", limit=1.2, text="alone / with outbox <= 1.2")
AGGREGATES = 10_000
PRODUCTS = 10_000
FLOOR = "with plain 1 KiB insert (floor)"


Business = Callable[[asyncpg.Connection, random.Random, str, bool], Awaitable[None]]
Event = Callable[[asyncpg.Connection, Message], Awaitable[None]]


class Statements:
    """The business transactions of the write rounds, in ``schema``."""

    def __init__(self, schema: str) -> None:
        self._insert = (
            f'INSERT INTO "{schema}".bench_orders (customer, amount, with_outbox) '
            "VALUES ($1, $2, $3)"
        )
        self._order = (
            f'INSERT INTO "{schema}".bench_order (customer, with_outbox) VALUES ($1, $2) '
            "RETURNING id"
        )
        self._line = (
            f'INSERT INTO "{schema}".bench_order_line (order_id, line_no, product, quantity, '
            "price) VALUES ($1, $2, $3, $4, $5)"
        )
        self._stock = (
            f'UPDATE "{schema}".bench_stock SET quantity = quantity - $2 WHERE product = $1'
        )
        self._plain = (
            f'INSERT INTO "{schema}".bench_plain (id, aggregate_id, payload) VALUES ($1, $2, $3)'
        )

    async def insert(
        self, conn: asyncpg.Connection, rng: random.Random, customer: str, flagged: bool
    ) -> None:
        """The bar's business transaction: one ``INSERT``."""
        await conn.execute(self._insert, customer, rng.randrange(10_000), flagged)

    async def order(
        self, conn: asyncpg.Connection, rng: random.Random, customer: str, flagged: bool
    ) -> None:
        """The realistic one: an order, its 3 lines, one stock decrement."""
        order_id = await conn.fetchval(self._order, customer, flagged)
        products = [rng.randrange(PRODUCTS) for _ in range(3)]
        lines = [(order_id, n, p, 1 + n, 100 * p) for n, p in enumerate(products)]
        await conn.executemany(self._line, lines)
        await conn.execute(self._stock, products[0], 1)

    async def plain(self, conn: asyncpg.Connection, message: Message) -> None:
        """The floor: the event as a plain row of the same size (no lock, sequence, NOTIFY)."""
        await conn.execute(self._plain, message.id, message.aggregate_id, message.payload)


@dataclass(frozen=True)
class Variant:
    """What each transaction of a write round does."""

    business: Business
    event: Event | None = None
    """Adds the transaction's event (``outbox.add``, or the floor's plain row)."""
    counted: bool = False
    """Its business rows are flagged ``with_outbox``: the check expects an outbox row each."""


async def write_round(
    conns: list[asyncpg.Connection], seconds: float, label: str, variant: Variant
) -> int:
    """Transactions committed by all connections in ``seconds``."""
    payload = {"note": os.urandom(480).hex()}  # ~1 KiB of JSON
    deadline = time.perf_counter() + seconds
    async with progress(f"{SCENARIO}: {label}") as tracker:

        async def writer(conn: asyncpg.Connection) -> None:
            rng = random.Random()
            while time.perf_counter() < deadline:
                customer = aggregate_id(rng.randrange(AGGREGATES))
                async with conn.transaction():
                    await variant.business(conn, rng, customer, variant.counted)
                    if variant.event is not None:
                        message = Message.create(
                            aggregate_type="customer",
                            aggregate_id=customer,
                            event_type="OrderPlaced",
                            payload=payload,
                        )
                        await variant.event(conn, message)
                tracker.add()

        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(writer, conn)
    return tracker.done


async def run(ctx: Context) -> None:
    size = ctx.size
    async with business_backlog(ctx, "write") as backlog:
        schema = backlog.settings.schema
        conns = [await asyncpg.connect(ctx.servers.postgres) for _ in range(size.writers)]
        quiet = PostgresOutbox(schema=schema, table=backlog.settings.table, notify=False)
        st, add = Statements(schema), backlog.outbox.add
        variants = {
            "alone": Variant(st.insert),
            "with outbox": Variant(st.insert, add, counted=True),
            "with outbox, no NOTIFY": Variant(st.insert, quiet.add, counted=True),
            FLOOR: Variant(st.insert, st.plain),
            "order tx alone": Variant(st.order),
            "order tx with outbox": Variant(st.order, add, counted=True),
        }
        totals = dict.fromkeys(variants, 0)
        try:
            for _ in range(size.write_rounds):
                for label, variant in variants.items():
                    totals[label] += await write_round(conns, size.write_seconds, label, variant)
        finally:
            for conn in conns:
                await conn.close()
        committed = totals["with outbox"] + totals["with outbox, no NOTIFY"]
        await check(ctx, backlog, committed + totals["order tx with outbox"])
    seconds = size.write_rounds * size.write_seconds
    rates = {label: total / seconds for label, total in totals.items()}
    alone = rates["alone"]
    say(f"{SCENARIO}: " + ", ".join(f"{v:,.0f} tx/s {k}" for k, v in rates.items()))
    rounds: dict[str, Any] = {"rounds": size.write_rounds, "seconds_per_round": size.write_seconds}
    w = size.writers
    ctx.results.measures += [
        cost(
            f"insert + outbox.add, {w} writers",
            rates["with outbox"],
            (alone, "insert alone"),
            bar=BAR,
            tx_per_s_without_notify=rates["with outbox, no NOTIFY"],
            **rounds,
        ),
        cost(
            f"insert + plain 1 KiB insert (floor), {w} writers",
            rates[FLOOR],
            (alone, "insert alone"),
        ),
        cost(
            f"order + 3 lines + stock update + outbox.add, {w} writers",
            rates["order tx with outbox"],
            (rates["order tx alone"], "order tx alone"),
            statements_per_tx=5,
            **rounds,
        ),
    ]


def cost(
    step: str, rate: float, baseline: tuple[float, str], bar: Bar | None = None, **details: Any
) -> Measure:
    """A transaction rate against its baseline; ratio = baseline / rate (the cost factor)."""
    alone, label = baseline
    return Measure(
        scenario=SCENARIO,
        step=step,
        value=rate,
        unit="tx/s",
        baseline=alone,
        baseline_label=label,
        ratio=alone / rate if rate else float("inf"),
        ratio_label="alone/with",
        bar=bar,
        details={"with_over_alone": rate / alone if alone else 0.0, **details},
    )


@asynccontextmanager
async def business_backlog(ctx: Context, label: str) -> AsyncIterator[PgBacklog]:
    """A fresh PostgreSQL backlog (dropped on exit) with the business tables of the write
    rounds: ``bench_orders`` for the single ``INSERT``; orders, order lines and a stock of
    ``PRODUCTS`` products for the realistic variant; ``bench_plain`` for the floor."""
    async with ctx.backlog("pg", label) as backlog:
        assert isinstance(backlog, PgBacklog)
        schema = backlog.settings.schema
        await backlog.pool.execute(
            f'CREATE TABLE "{schema}".bench_orders (id bigserial PRIMARY KEY, customer text '
            "NOT NULL, amount bigint NOT NULL, with_outbox boolean NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())"
        )
        await _create_order_tables(backlog)
        yield backlog


async def _create_order_tables(backlog: PgBacklog) -> None:
    """Orders, order lines and a stock of ``PRODUCTS`` products for the realistic variant."""
    schema = backlog.settings.schema
    await backlog.pool.execute(
        f'CREATE TABLE "{schema}".bench_order (id bigserial PRIMARY KEY, customer text NOT NULL, '
        "with_outbox boolean NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
        f'CREATE TABLE "{schema}".bench_order_line (order_id bigint NOT NULL REFERENCES '
        f'"{schema}".bench_order (id), line_no integer NOT NULL, product integer NOT NULL, '
        "quantity integer NOT NULL, price bigint NOT NULL, PRIMARY KEY (order_id, line_no));"
        f'CREATE TABLE "{schema}".bench_stock (product integer PRIMARY KEY, quantity bigint NOT '
        "NULL);"
        f'CREATE TABLE "{schema}".bench_plain (id uuid PRIMARY KEY, aggregate_id text NOT NULL, '
        "payload bytea NOT NULL);"
        f'INSERT INTO "{schema}".bench_stock SELECT g, 1000000000 FROM generate_series(0, '
        f"{PRODUCTS - 1}) g"
    )


async def check(ctx: Context, backlog: PgBacklog, committed: int) -> None:
    """Every committed "with" transaction left one outbox row, and no other row exists."""
    schema = backlog.settings.schema
    business = await backlog.pool.fetchval(
        f'SELECT (SELECT count(*) FROM "{schema}".bench_orders WHERE with_outbox) + '
        f'(SELECT count(*) FROM "{schema}".bench_order WHERE with_outbox)'
    )
    rows = await backlog.pool.fetchval(f"SELECT count(*) FROM {backlog.table}")
    ctx.results.correctness.append(
        Correctness(
            scenario=SCENARIO,
            step="outbox rows = committed business rows",
            expected=int(business),
            received=int(rows),
            lost=max(0, int(business) - int(rows)),
            duplicates=max(0, int(rows) - int(business)),
            order_violations=0,
            unexpected=abs(committed - int(business)),
        )
    )
