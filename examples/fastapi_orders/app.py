"""A FastAPI order service: each order and its ``OrderCreated`` event commit in ONE transaction.

``POST /orders`` inserts the order through SQLAlchemy's ``AsyncSession``, adds the event with
``PostgresOutbox.add(session, ...)`` in the same transaction, then charges the card: a
declined payment raises inside the transaction, which rolls back the order and its event
together (HTTP 402). ``outboxkit relay`` publishes committed events to Kafka afterwards.

Configuration, from the environment the relay reads too:

* ``DATABASE_URL``: SQLAlchemy URL (``postgresql+asyncpg://...`` or
  ``postgresql+psycopg://...``); else ``OUTBOXKIT_PG_DSN`` with the asyncpg driver;
* ``OUTBOXKIT_PG_SCHEMA`` / ``OUTBOXKIT_PG_TABLE``: where the outbox is (the writer reads them,
  as the relay does); the ``orders`` table is created in the same schema at start-up.

Run it (after ``outboxkit migrate --store pg``)::

    OUTBOXKIT_PG_DSN=postgresql://postgres@127.0.0.1:55432/outboxkit \\
        uv run uvicorn examples.fastapi_orders.app:app
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, HTTPException, Request
from outboxkit_postgres import PostgresOutbox
from pydantic import BaseModel, Field
from sqlalchemy import DateTime, String, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from outboxkit import Message, uuid7

DECLINED_CARD = "4000000000000002"
"""The card number the demo payment gateway declines."""


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(200))
    total_cents: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NewOrder(BaseModel):
    customer: str = Field(min_length=1, max_length=200)
    total_cents: int = Field(gt=0)
    card: str = Field(min_length=12, max_length=19)


class PaymentDeclined(Exception):
    """The payment gateway refused the card."""


async def charge(card: str, total_cents: int) -> None:
    """The payment gateway of the demo: declines :data:`DECLINED_CARD`."""
    if card == DECLINED_CARD:
        raise PaymentDeclined(f"card ending {card[-4:]} declined")


def database_url() -> str:
    """``DATABASE_URL``, else ``OUTBOXKIT_PG_DSN`` (the relay's) with the asyncpg driver."""
    url = os.environ.get("DATABASE_URL") or os.environ.get(
        "OUTBOXKIT_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


outbox = PostgresOutbox()  # schema, table, notify: from OUTBOXKIT_PG_*, as the relay


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    schema = os.environ.get("OUTBOXKIT_PG_SCHEMA") or "public"
    engine = create_async_engine(database_url(), pool_size=5).execution_options(
        schema_translate_map={None: schema}  # the orders table lives next to the outbox
    )
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    app.state.engine = engine
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(title="orders", lifespan=lifespan)


@app.post("/orders", status_code=201)
async def create_order(order: NewOrder, request: Request) -> dict[str, str]:
    engine: AsyncEngine = request.app.state.engine
    order_id = uuid7()
    try:
        async with AsyncSession(engine) as session, session.begin():
            session.add(
                Order(
                    id=order_id,
                    customer=order.customer,
                    total_cents=order.total_cents,
                    created_at=datetime.now(UTC),
                )
            )
            await outbox.add(
                session,
                Message.create(
                    aggregate_type="order",
                    aggregate_id=str(order_id),
                    event_type="OrderCreated",
                    topic="orders",
                    payload={
                        "order_id": str(order_id),
                        "customer": order.customer,
                        "total_cents": order.total_cents,
                    },
                ),
            )
            await charge(order.card, order.total_cents)  # declined: everything rolls back
    except PaymentDeclined as exc:
        raise HTTPException(status_code=402, detail=str(exc)) from None
    return {"id": str(order_id)}


@app.get("/healthz")
async def healthz(request: Request) -> dict[str, str]:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return {"status": "ok"}
