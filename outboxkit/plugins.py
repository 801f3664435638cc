"""What store and publisher plugins register, and under which entry-point groups.

A plugin distribution registers an object in the group ``outboxkit.stores`` or
``outboxkit.publishers``::

    [project.entry-points."outboxkit.stores"]
    pg = "outboxkit_postgres.plugin:plugin"

The object is a :class:`StorePlugin` or :class:`PublisherPlugin`: a name, a typed settings
struct (``msgspec.Struct`` whose fields are ``Annotated[T, msgspec.Meta(description=...)]``;
mark secrets with ``extra={"secret": True}``) and a factory. The CLI derives its flags,
``OUTBOXKIT_<PLUGIN>_<FIELD>`` environment variables, TOML tables and ``--help`` from the
settings struct, so the core never branches per plugin; :mod:`outboxkit.cli.plugins` finds and
loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from outboxkit.protocols import Publisher, Store

__all__ = ["PUBLISHER_GROUP", "STORE_GROUP", "PublisherPlugin", "StorePlugin"]

STORE_GROUP = "outboxkit.stores"
PUBLISHER_GROUP = "outboxkit.publishers"

SettingsT = TypeVar("SettingsT", bound=msgspec.Struct)


@dataclass(frozen=True)
class StorePlugin(Generic[SettingsT]):
    """What a store plugin registers under ``outboxkit.stores``."""

    name: str
    settings_type: type[SettingsT]
    create: Callable[[SettingsT], Store]
    summary: str = ""


@dataclass(frozen=True)
class PublisherPlugin(Generic[SettingsT]):
    """What a publisher plugin registers under ``outboxkit.publishers``."""

    name: str
    settings_type: type[SettingsT]
    create: Callable[[SettingsT], Publisher]
    summary: str = ""
