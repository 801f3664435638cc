"""Plugin lookup for the CLI: only the chosen plugins are imported.

Only the plugin asked for is imported, so a broken or half-installed third-party plugin (or a
missing driver) never stops ``outboxkit relay --store sqlite``. ``outboxkit plugins`` reports
such plugins.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from outboxkit.errors import PluginNotFoundError
from outboxkit.inbox.contract import INBOX_GROUP, InboxPlugin
from outboxkit.plugins import PUBLISHER_GROUP, STORE_GROUP, PublisherPlugin, StorePlugin

__all__ = ["KINDS", "PluginKind", "installed", "load"]


@dataclass(frozen=True)
class PluginKind:
    """A kind of plugin: its entry-point group and registration class."""

    name: str
    group: str
    cls: type[Any]
    section_suffix: str = ""
    """Added to the plugin name to name its settings section (``pg`` -> ``pg-inbox``)."""

    @property
    def plural(self) -> str:
        return self.name + ("es" if self.name.endswith("x") else "s")

    def section(self, plugin: str) -> str:
        """The settings section (flag prefix, env prefix, TOML table) of plugin ``plugin``."""
        return plugin + self.section_suffix


STORE = PluginKind("store", STORE_GROUP, StorePlugin)
PUBLISHER = PluginKind("publisher", PUBLISHER_GROUP, PublisherPlugin)
INBOX = PluginKind("inbox", INBOX_GROUP, InboxPlugin, "-inbox")
KINDS = {"store": STORE, "publisher": PUBLISHER, "inbox": INBOX}


def installed(kind: PluginKind) -> list[str]:
    """Names of the installed plugins of ``kind``, sorted, without importing them."""
    return sorted({ep.name for ep in entry_points(group=kind.group)})


def load(kind: PluginKind, name: str) -> Any:
    """Import the plugin ``name``; the error lists the installed ones, or says why it broke."""
    for ep in entry_points(group=kind.group):
        if ep.name != name:
            continue
        try:
            obj = ep.load()
        except ImportError as exc:
            raise PluginNotFoundError(
                f"{kind.name} plugin {name!r} is installed but cannot be imported "
                f"({ep.value}): {exc}"
            ) from exc
        if not isinstance(obj, kind.cls):
            raise PluginNotFoundError(
                f"{kind.name} plugin {name!r} ({ep.value}) is not a {kind.cls.__name__}"
            )
        return obj
    names = ", ".join(installed(kind)) or "none"
    raise PluginNotFoundError(
        f"no {kind.name} plugin named {name!r}; installed: {names}. "
        f"Install its distribution (e.g. outboxkit-{name}) or pick one of these."
    )
