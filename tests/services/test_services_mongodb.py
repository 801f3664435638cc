"""Smoke test: the MongoDB-wire server stores and finds a document through PyMongo's async API."""

from __future__ import annotations

import uuid
from typing import Any

import pymongo
import pytest

pytestmark = pytest.mark.anyio


async def test_mongodb_insert_find(mongodb_url: str) -> None:
    client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
        mongodb_url, serverSelectionTimeoutMS=10_000
    )
    collection = client["outboxkit_smoke"][f"smoke_{uuid.uuid4().hex}"]
    try:
        doc_id = str(uuid.uuid4())
        result = await collection.insert_one({"_id": doc_id, "outbox": [{"event": "created"}]})
        assert result.inserted_id == doc_id
        found = await collection.find_one({"_id": doc_id})
        assert found == {"_id": doc_id, "outbox": [{"event": "created"}]}
    finally:
        await collection.drop()
        await client.close()
