"""The core imports no plugin, no database or broker driver and nothing of the repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import outboxkit

PACKAGE = Path(outboxkit.__file__).resolve().parent
FORBIDDEN = frozenset(
    {
        "aiokafka",
        "asyncpg",
        "benchmarks",
        "django",
        "kafka",
        "motor",
        "nats",
        "psycopg",
        "psycopg2",
        "pymongo",
        "sqlalchemy",
        "tests",
    }
)
"""Top-level packages the core must not import (plugins, ``outboxkit_*``, are refused too)."""


def _dynamic(node: ast.Call) -> str | None:
    """The module an ``importlib.import_module("x")`` or ``__import__("x")`` call names."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in {"import_module", "__import__"} or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imported_packages(source: str) -> set[str]:
    """The top-level packages ``source`` imports: statements and literal dynamic imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and (module := _dynamic(node)) is not None:
            found.add(module)
    return {module.partition(".")[0] for module in found}


def _refused(package: str) -> bool:
    return package in FORBIDDEN or package.startswith("outboxkit_")


MODULES = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py"))


def test_the_walk_sees_the_core() -> None:
    assert {"__init__.py", "relay/sharded.py", "cli/app.py"} <= set(MODULES)


def test_the_check_refuses_what_it_should() -> None:
    source = (
        "import asyncpg.pool\nfrom outboxkit_kafka import plugin\nfrom outboxkit import x\n"
        "importlib.import_module('benchmarks.cli')\n"
    )
    assert sorted(p for p in imported_packages(source) if _refused(p)) == [
        "asyncpg",
        "benchmarks",
        "outboxkit_kafka",
    ]


@pytest.mark.parametrize("module", MODULES)
def test_core_module_imports_no_plugin_driver_or_repository_code(module: str) -> None:
    source = (PACKAGE / module).read_text(encoding="utf-8")
    refused = sorted(p for p in imported_packages(source) if _refused(p))
    assert not refused, f"outboxkit/{module} imports {', '.join(refused)}"
