"""The ``outboxkit.toml`` configuration file and the environment the CLI reads.

The file is found by ``--config PATH``, else ``OUTBOXKIT_CONFIG``, else ``./outboxkit.toml`` if
it exists. Top-level keys choose plugins (``store = "pg"``, ``publisher = "kafka"``); tables hold
settings: ``[relay]`` for :class:`~outboxkit.relay.settings.RelaySettings`, ``[<plugin>]`` for
each plugin's settings struct.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outboxkit.errors import ConfigurationError

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG", "ENV_PREFIX", "ConfigFile", "find_config", "load_config"]

ENV_PREFIX = "OUTBOXKIT_"
CONFIG_ENV = "OUTBOXKIT_CONFIG"
DEFAULT_CONFIG = Path("outboxkit.toml")
TOP_LEVEL_KEYS = frozenset({"store", "publisher"})


@dataclass(frozen=True)
class ConfigFile:
    """A parsed configuration file (empty when there is none)."""

    path: Path | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def table(self, section: str) -> Mapping[str, Any]:
        """The ``[section]`` table, empty if absent; an error if it is not a table."""
        value = self.data.get(section, {})
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{self.where(section)} must be a table, like [{section}]")
        return value

    def top(self, key: str) -> str | None:
        """A top-level string key such as ``store``; an error if it is not a string."""
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{self.where(key)} must be a string")
        return value

    def check_tables(self, known: Iterable[str]) -> None:
        """Refuse a table that no setting reads (a typo such as ``[kafak]``).

        ``known``: ``relay`` and the names of the installed plugins, chosen or not, so one file
        can hold the settings of several deployments.
        """
        allowed = sorted(set(known))
        for section, value in self.data.items():
            if not isinstance(value, Mapping) or section in allowed:
                continue
            close = difflib.get_close_matches(section, allowed, n=1)
            hint = f"did you mean [{close[0]}]? " if close else ""
            raise ConfigurationError(
                f"{self.where(f'[{section}]')} is not a table outboxkit reads; {hint}known "
                f"tables: {', '.join(f'[{name}]' for name in allowed)} (a plugin's table is "
                "known once its distribution is installed)"
            )

    def where(self, section: str, key: str | None = None) -> str:
        """How to name a key of this file in an error message."""
        name = str(self.path) if self.path is not None else "config"
        return f"{name} [{section}] {key}" if key is not None else f"{name} {section}"


def find_config(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read: flag, then env var, then ``./outboxkit.toml``."""
    if explicit:
        return Path(explicit)
    from_env = environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_config(
    explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> ConfigFile:
    """Find and parse the configuration file; an explicitly named file must exist."""
    path = find_config(explicit, os.environ if environ is None else environ)
    if path is None:
        return ConfigFile()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in data.items():
        if not isinstance(value, dict) and key not in TOP_LEVEL_KEYS:
            raise ConfigurationError(
                f"config file {path}: unknown top-level key {key!r}; allowed: "
                f"{', '.join(sorted(TOP_LEVEL_KEYS))} and tables like [relay] or [<plugin>]"
            )
    return ConfigFile(path=path, data=data)
