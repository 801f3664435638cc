"""MkDocs hooks: README.md is the site's front page, CHANGELOG.md a page, and links between
the repository's Markdown files keep working on the site.

The Markdown files are written to be read in the repository: README.md links to
``docs/operations.md`` and to ``examples/order_service.py``, docs/*.md link to ``../README.md``
and to source files. On the site, a link to a file that is a page becomes a link to that page;
a link to another file of the repository becomes a link to it on ``repo_url`` when mkdocs.yml
sets one, else plain text naming the file. A link to a file that does not exist is left as it
is, so that ``mkdocs build --strict`` reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT_PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
"""Markdown files at the repository's root published as pages: repository path -> page."""

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|#|/)", re.IGNORECASE)


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs_prefix(config: MkDocsConfig) -> str:
    return Path(config.docs_dir).resolve().relative_to(_root(config)).as_posix()


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    """Publish README.md as the front page and CHANGELOG.md as a page."""
    for source, page in ROOT_PAGES.items():
        content = (_root(config) / source).read_text(encoding="utf-8")
        files.append(File.generated(config, page, content=content))
    return files


def _repository_path(page: Page, config: MkDocsConfig) -> str:
    """Where the page's Markdown lives in the repository."""
    for source, published in ROOT_PAGES.items():
        if page.file.src_uri == published:
            return source
    return f"{_docs_prefix(config)}/{page.file.src_uri}"


def _page_of(path: str, config: MkDocsConfig) -> str | None:
    """The page (path under docs_dir) that publishes the repository file ``path``, if any."""
    if path in ROOT_PAGES:
        return ROOT_PAGES[path]
    prefix = _docs_prefix(config) + "/"
    if path.startswith(prefix) and path.endswith(".md"):
        return path.removeprefix(prefix)
    return None


def _rewrite(match: re.Match[str], source: str, page: Page, config: MkDocsConfig) -> str:
    text, target = match["text"], match["target"]
    if EXTERNAL.match(target):
        return match[0]
    path, hash_, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    if resolved.startswith("../") or not (_root(config) / resolved).exists():
        return match[0]  # not a file of the repository: MkDocs reports it
    published = _page_of(resolved, config)
    if published is not None:
        relative = posixpath.relpath(published, posixpath.dirname(page.file.src_uri) or ".")
        return f"[{text}]({relative}{hash_}{anchor})"
    if config.repo_url:
        kind = "tree" if (_root(config) / resolved).is_dir() else "blob"
        return f"[{text}]({config.repo_url.rstrip('/')}/{kind}/main/{resolved}{hash_}{anchor})"
    if text.strip("`").rstrip("/") == resolved.rstrip("/"):
        return text
    return f"{text} (`{resolved}`)"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, **_: Any) -> str:
    """Point the links written for the repository at the site's pages (outside code blocks)."""
    source = _repository_path(page, config)
    lines, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        if not fenced:
            line = LINK.sub(lambda match: _rewrite(match, source, page, config), line)
        lines.append(line)
    return "".join(lines)
