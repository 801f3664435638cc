"""The MongoDB writer passes the parts of the writer conformance suite that apply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from outboxkit_mongodb import MongoStore
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit.testing import WriterConformance
from tests.support.writer_harnesses import MongoHarness

_NO_TRANSACTION = (
    "the entries are part of the aggregate document's own single-document update: they are "
    "written iff that update is, with no transaction to roll back or to require"
)


class TestMongoWriterConformance(WriterConformance):
    not_applicable: ClassVar[Mapping[str, str]] = {
        "test_rollback_leaves_no_message": _NO_TRANSACTION,
        "test_exception_in_the_transaction_leaves_no_message": _NO_TRANSACTION,
        "test_add_outside_a_transaction_is_refused": _NO_TRANSACTION,
        "test_concurrent_writers_of_one_aggregate_keep_commit_order": (
            "an aggregate's entries live in its own document, appended by single-document "
            "updates that the server applies one at a time: array order is update order"
        ),
    }

    @pytest.fixture
    def writer_harness(self, store: MongoStore, mongo_db: AsyncDatabase[Any]) -> MongoHarness:
        return MongoHarness(store, mongo_db["orders"])
