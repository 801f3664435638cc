"""The embedded stdout publisher: JSON lines on standard output or in a file.

* :mod:`~outboxkit.embedded.stdout.publisher`: :class:`StdoutPublisher`;
* :mod:`~outboxkit.embedded.stdout.records`: the line format (:class:`JsonLine`).
"""

from __future__ import annotations

from outboxkit.embedded.stdout.publisher import StdoutPublisher
from outboxkit.embedded.stdout.records import JsonLine, decode_line
from outboxkit.embedded.stdout.settings import StdoutSettings

__all__ = ["JsonLine", "StdoutPublisher", "StdoutSettings", "decode_line"]
