"""A real Django settings module for the Django writer's tests: two PostgreSQL databases
(``default`` and ``orders``, both the test server of ``OUTBOXKIT_TEST_POSTGRES_URL``), the
``postgresql`` backend on psycopg 3."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ.get("OUTBOXKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/"))


def _database() -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/") or "postgres",
        "USER": unquote(_url.username or "postgres"),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
        "CONN_MAX_AGE": 0,
    }


SECRET_KEY = "outboxkit-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS: list[str] = []
DATABASES = {"default": _database(), "orders": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
