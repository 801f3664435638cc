"""Log lines as text or JSON, with secrets masked (``--log-format``, ``--log-level``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from outboxkit.masking import masker

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]

_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` with DSN passwords and secret values masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._mask = masker(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self._mask(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message`` and the record's extra fields (``instance``, ``shard``, ``shards``, counts,
    ``error``...); a traceback goes in ``exception``. Secrets are masked in every string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._mask = masker(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._mask(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = self._clean(value)
        if record.exc_info:
            entry["exception"] = self._mask(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._mask(value)
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self._clean(v) for k, v in value.items()}
        if value is None or isinstance(value, bool | int | float):
            return value
        return self._mask(str(value))


def configure_logging(level: str, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``), masking ``secrets``.

    Like :func:`logging.basicConfig`, it adds no handler when the application (or a test
    runner) already gave the root logger one of its own; it replaces one it added itself.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    ours = [h for h in root.handlers if getattr(h, "_outboxkit", False)]
    if len(ours) < len(root.handlers):
        return
    for old in ours:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._outboxkit = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root.addHandler(handler)
