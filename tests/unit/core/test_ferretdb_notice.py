"""Where users read about MongoDB, FerretDB's lost writes are said next to the commands: the
README's MongoDB section and what ``scripts/services up`` prints when it brings FerretDB up."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FIGURES = ("11 of 3,003", "1 of 303")


def test_readme_mongodb_section_warns_before_the_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### MongoDB to Kafka") :]
    before_commands = section[: section.index("```sh")]
    assert "FerretDB loses acknowledged writes" in before_commands
    assert all(figure in before_commands for figure in FIGURES)


def test_services_harness_has_the_warning_for_its_ferretdb() -> None:
    """The harness prints its FerretDB ``notice`` on ``up`` (the text may live in any of its
    modules)."""
    text = " ".join(
        " ".join(path.read_text().split()) for path in (ROOT / "scripts" / "_services").glob("*.py")
    )
    assert "FerretDB loses acknowledged writes" in text
    assert all(figure in text for figure in FIGURES)
