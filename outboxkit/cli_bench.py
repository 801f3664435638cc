"""``outboxkit bench``: runs the benchmark suite of an outboxkit checkout."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from outboxkit.errors import ConfigurationError

__all__ = ["run_bench"]


def run_bench(argv: Sequence[str]) -> int:
    """Call ``benchmarks.cli.main(argv)`` from the current directory (the repository root)."""
    root = Path.cwd()
    if not (root / "benchmarks" / "cli.py").is_file():
        raise ConfigurationError(
            "run from the outboxkit repository: benchmarks/ not found "
            f"in {root} (the benchmark suite is not part of the installed package)"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("benchmarks.cli")
    result = module.main(list(argv))
    return int(result or 0)
