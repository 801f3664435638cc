"""Smoke test: the MongoDB-wire server stores and finds a document through PyMongo's async API."""

from __future__ import annotations

import uuid

import pytest

from tests.support.mongodb import mongo_database

pytestmark = pytest.mark.anyio


async def test_mongodb_insert_find(mongodb_url: str) -> None:
    async with mongo_database(mongodb_url, prefix="okt_smoke") as db:
        collection = db["smoke"]
        doc_id = str(uuid.uuid4())
        result = await collection.insert_one({"_id": doc_id, "outbox": [{"event": "created"}]})
        assert result.inserted_id == doc_id
        found = await collection.find_one({"_id": doc_id})
        assert found == {"_id": doc_id, "outbox": [{"event": "created"}]}
