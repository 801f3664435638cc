"""Every outboxkit name README.md, docs/ and examples/ show imports from where they show it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*.py")]
)
TUTORIAL_ONLY = ("outboxkit_redis",)
"""The plugin docs/writing-a-plugin.md builds as an example: it does not exist."""

_FROM_IMPORT = re.compile(r"from (outboxkit\w*(?:\.\w+)*) import (\([^)]*\)|[^\n]+)")
_DOTTED = re.compile(r"`(outboxkit\w*(?:\.\w+)+)")


def _references(text: str) -> set[str]:
    found: set[str] = set()
    for module, names in _FROM_IMPORT.findall(text):
        for name in names.strip("()").replace("\n", ",").split(","):
            name = name.split("#")[0].split(" as ")[0].strip()
            if name:
                found.add(f"{module}.{name}")
    found.update(_DOTTED.findall(text))
    return {ref for ref in found if not ref.startswith(TUTORIAL_ONLY)}


REFERENCES = sorted(
    (page.relative_to(ROOT).as_posix(), ref)
    for page in PAGES
    for ref in _references(page.read_text(encoding="utf-8"))
)


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_the_pages_show_names() -> None:
    assert len(REFERENCES) >= 10, REFERENCES


@pytest.mark.parametrize(("page", "reference"), REFERENCES)
def test_shown_name_is_importable(page: str, reference: str) -> None:
    assert _resolve(reference) is not None, f"{page} shows {reference}"
