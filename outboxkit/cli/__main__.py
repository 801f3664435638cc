"""``python -m outboxkit.cli``: the ``outboxkit`` command."""

from outboxkit.cli.app import main

raise SystemExit(main())
