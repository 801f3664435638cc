"""`pip install "outboxkit[pg,kafka]"` installs the plugins, each requiring a compatible core."""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.requirements import Requirement

PLUGINS = {
    "pg": "outboxkit-postgres",
    "mongodb": "outboxkit-mongodb",
    "kafka": "outboxkit-kafka",
    "nats": "outboxkit-nats",
}


def _next_minor(version: str) -> str:
    major, minor = (int(part) for part in version.split(".")[:2])
    return f"{major}.{minor + 1}.0"


def _requirements(distribution: str) -> list[Requirement]:
    return [Requirement(line) for line in metadata.requires(distribution) or []]


def _of_extra(extra: str) -> dict[str, Requirement]:
    return {
        requirement.name: requirement
        for requirement in _requirements("outboxkit")
        if requirement.marker is not None
        and "extra" in str(requirement.marker)  # not a platform-only marker (uvloop)
        and requirement.marker.evaluate({"extra": extra})
    }


@pytest.mark.parametrize(("extra", "plugin"), sorted(PLUGINS.items()))
def test_extra_installs_its_plugin_at_a_matching_version(extra: str, plugin: str) -> None:
    requirement = _of_extra(extra)[plugin]
    assert requirement.specifier.contains(metadata.version(plugin))
    assert not requirement.specifier.contains(_next_minor(metadata.version(plugin)))


def test_all_installs_every_plugin() -> None:
    assert set(_of_extra("all")) == set(PLUGINS.values())


@pytest.mark.parametrize("plugin", sorted(PLUGINS.values()))
def test_plugin_requires_a_core_range_including_this_one(plugin: str) -> None:
    (core,) = [r for r in _requirements(plugin) if r.name == "outboxkit"]
    version = metadata.version("outboxkit")
    assert core.specifier.contains(version)
    # A range, not any core: the next minor release may change the plugin protocols.
    assert not core.specifier.contains(_next_minor(version))
