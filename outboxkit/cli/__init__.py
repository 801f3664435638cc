"""The ``outboxkit`` command line.

* :mod:`~outboxkit.cli.app`: the entry point (:func:`main`), parsing and exit codes;
* :mod:`~outboxkit.cli.commands`: what each command does;
* :mod:`~outboxkit.cli.options`: options derived from settings structs;
* :mod:`~outboxkit.cli.config`: the TOML file and ``OUTBOXKIT_*`` environment variables;
* :mod:`~outboxkit.cli.plugins`: finding and loading the installed plugins;
* :mod:`~outboxkit.cli.output` and :mod:`~outboxkit.cli.errors`: what the user reads.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``outboxkit`` command (see :func:`outboxkit.cli.app.main`).

    Imported on call, so that the writers can read :mod:`~outboxkit.cli.config` without
    loading the command line.
    """
    from outboxkit.cli.app import main as run

    return run(argv)
