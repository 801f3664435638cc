"""``python3 -m _services`` (with ``scripts/`` on the path), as ``scripts/services`` runs it."""

from __future__ import annotations

import sys

from .commands import main

sys.exit(main(sys.argv[1:]))
