"""What a test does when something it needs is not there: skip on a developer machine, fail
in CI (``CI`` set), where a missing server or tool is a failure, never a skip."""

from __future__ import annotations

from typing import NoReturn

import pytest

from tests.support.servers import in_ci

__all__ = ["missing"]


def missing(message: str) -> NoReturn:
    """Fail in CI, skip elsewhere, saying what is missing and what to do."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
