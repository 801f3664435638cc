"""The documentation site builds with ``mkdocs build --strict``, and strict means something:
a broken link or a public member without a docstring fails the build."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.missing import missing

ROOT = Path(__file__).resolve().parents[3]
HOOKS = ROOT / "scripts" / "docsite" / "hooks.py"
EXTENSION = ROOT / "scripts" / "docsite" / "griffe_public_docstrings.py"


@pytest.fixture(autouse=True)
def _mkdocs() -> None:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        missing("mkdocs is not installed: run uv sync --all-packages (the dev dependency group)")


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_site_builds_strict(tmp_path: Path) -> None:
    done = _build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    front = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "uv sync --all-packages" in front  # README is the front page
    assert 'href="operations/"' in front  # its docs/operations.md link points at the page
    postgres = (tmp_path / "site" / "reference" / "postgres" / "index.html").read_text()
    assert 'id="outboxkit_postgres.PostgresOutbox.add"' in postgres


def _project(tmp_path: Path, *, link: str, docstring: str) -> Path:
    """A small site using the repository's hook and extension on a one-function package."""
    project = tmp_path / "project"
    (project / "docs" / "reference").mkdir(parents=True)
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text(
        f'"""A package."""\n\n__all__ = ["f"]\n\n\ndef f() -> None:\n{docstring}    pass\n'
    )
    (project / "docs" / "reference" / "pkg.md").write_text("# pkg\n\n::: pkg\n")
    (project / "README.md").write_text(f"# Front\n\nSee [the API]({link}).\n")
    (project / "CHANGELOG.md").write_text("# Changelog\n")
    (project / "mkdocs.yml").write_text(
        textwrap.dedent(
            f"""\
            site_name: t
            nav: [index.md, changelog.md, reference/pkg.md]
            hooks: ["{HOOKS}"]
            plugins:
              - mkdocstrings:
                  handlers:
                    python:
                      paths: [.]
                      options:
                        extensions: ["{EXTENSION}:PublicDocstrings"]
                        show_if_no_docstring: false
            """
        )
    )
    return project


def test_the_sample_site_builds(tmp_path: Path) -> None:
    project = _project(tmp_path, link="docs/reference/pkg.md", docstring='    """F."""\n')
    done = _build(project, tmp_path / "site")
    assert done.returncode == 0, done.stderr


def test_a_broken_link_and_a_missing_docstring_fail_the_build(tmp_path: Path) -> None:
    project = _project(tmp_path, link="docs/reference/missing.md", docstring="")
    done = _build(project, tmp_path / "site")
    assert done.returncode == 1
    assert "link 'docs/reference/missing.md', but the target is not found" in done.stderr
    assert "pkg.f is public but has no docstring" in done.stderr
