"""Entry-point discovery of store and publisher plugins.

A plugin distribution registers an object in the group ``outboxkit.stores`` or
``outboxkit.publishers``::

    [project.entry-points."outboxkit.stores"]
    pg = "outboxkit_postgres.plugin:plugin"

The object is a :class:`StorePlugin` or :class:`PublisherPlugin`: a name, a typed settings
struct (``msgspec.Struct`` whose fields are ``Annotated[T, msgspec.Meta(description=...)]``;
mark secrets with ``extra={"secret": True}``) and a factory. The CLI derives its flags,
``OUTBOXKIT_<PLUGIN>_<FIELD>`` environment variables, TOML tables and ``--help`` from the
settings struct, so the core never branches per plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import msgspec

from outboxkit.errors import PluginNotFoundError
from outboxkit.protocols import Publisher, Store

__all__ = [
    "PUBLISHER_GROUP",
    "STORE_GROUP",
    "PublisherPlugin",
    "StorePlugin",
    "load_publisher",
    "load_store",
    "publisher_plugins",
    "store_plugins",
]

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


def _discover(group: str, kind: type[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group=group):
        obj = ep.load()
        if not isinstance(obj, kind):
            raise TypeError(f"entry point {ep.name!r} in {group} is not a {kind.__name__}: {obj!r}")
        found[ep.name] = obj
    return found


def store_plugins() -> dict[str, StorePlugin[Any]]:
    """Installed store plugins by name."""
    return _discover(STORE_GROUP, StorePlugin)


def publisher_plugins() -> dict[str, PublisherPlugin[Any]]:
    """Installed publisher plugins by name."""
    return _discover(PUBLISHER_GROUP, PublisherPlugin)


def _pick(kind: str, name: str, installed: dict[str, Any]) -> Any:
    try:
        return installed[name]
    except KeyError:
        names = ", ".join(sorted(installed)) or "none"
        raise PluginNotFoundError(
            f"no {kind} plugin named {name!r}; installed: {names}. "
            f"Install its distribution (e.g. outboxkit-{name}) or pick one of these."
        ) from None


def load_store(name: str) -> StorePlugin[Any]:
    """The store plugin called ``name``; the error lists the installed ones."""
    plugin: StorePlugin[Any] = _pick("store", name, store_plugins())
    return plugin


def load_publisher(name: str) -> PublisherPlugin[Any]:
    """The publisher plugin called ``name``; the error lists the installed ones."""
    plugin: PublisherPlugin[Any] = _pick("publisher", name, publisher_plugins())
    return plugin
