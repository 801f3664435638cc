"""The pg store passes the store conformance suite against the real PostgreSQL."""

from __future__ import annotations

from outboxkit.testing import StoreConformance


class TestPostgresStoreConformance(StoreConformance):
    """Fixtures ``store`` and ``write`` come from tests/integration/postgres/conftest.py."""
