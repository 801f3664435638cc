"""Griffe extension: the API reference documents every public member, or the build warns.

mkdocstrings hides members without a docstring; this extension makes each of them a warning
(an error under ``mkdocs build --strict``). Public members are those the reference pages
render: each ``::: module`` of ``docs/reference/*.md``, the names of that module's ``__all__``,
and, for a class among them, the members it declares whose names don't start with ``_``.

Two kinds of members take their docstring from elsewhere: the fields of the settings structs
from their ``msgspec.Meta(description=...)`` (the CLI's help text), and the undocumented
methods of a class that implements a protocol of ``outboxkit.protocols`` (it has all of the
protocol's members) from the protocol. Test methods (``test_*``) of the conformance suites are
neither required nor rendered: their names say what they check. Sphinx roles in docstrings
(``:class:`Store```) are rendered as code.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import griffe

IDENTIFIER = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)
ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`~?([^`]+)`")
PROTOCOLS = "outboxkit.protocols"


def _meta_description(annotation: ast.expr | None) -> str | None:
    """The ``description`` of a ``msgspec.Meta(...)`` inside an ``Annotated[...]``."""
    for node in ast.walk(annotation) if annotation is not None else ():
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Meta":
            for keyword in node.keywords:
                if keyword.arg == "description" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return None


class PublicDocstrings(griffe.Extension):
    """Warn about public members without a docstring; document settings fields."""

    def __init__(self, reference: str = "docs/reference") -> None:
        self.modules: set[str] = set()
        for page in sorted(Path(reference).glob("*.md")):
            self.modules.update(IDENTIFIER.findall(page.read_text(encoding="utf-8")))
        protocols = griffe.load(PROTOCOLS, search_paths=[".", *sys.path])
        self.protocols: list[dict[str, griffe.Docstring]] = [
            {
                name: member.docstring
                for name, member in cls.members.items()
                if not name.startswith("_") and member.docstring is not None
            }
            for cls in protocols.classes.values()
            if any(str(base) in {"Protocol", "typing.Protocol"} for base in cls.bases)
        ]

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(lambda match: f"`{match[1]}`", obj.docstring.value)

    def on_attribute_instance(
        self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **_: Any
    ) -> None:
        if attr.docstring is None and isinstance(node, ast.AnnAssign):
            description = _meta_description(node.annotation)
            if description is not None:
                attr.docstring = griffe.Docstring(description, parent=attr)

    def on_package(self, *, pkg: griffe.Module, **_: Any) -> None:
        for path in sorted(self.modules):
            if path == pkg.path or path.startswith(pkg.path + "."):
                self._check_module(pkg.modules_collection[path])

    def _check_module(self, module: griffe.Object | griffe.Alias) -> None:
        self._require(module)
        for name in module.exports or ():
            member = module[str(name)]
            self._require(member)
            target = member.final_target if isinstance(member, griffe.Alias) else member
            if isinstance(target, griffe.Class):
                self._inherit_from_protocols(target)
                for child_name, child in list(target.members.items()):
                    if child_name.startswith("test_") and child.docstring is None:
                        del target.members[child_name]  # a conformance test: not rendered
                    elif not child_name.startswith("_") and not child.is_alias:
                        self._require(child)

    def _inherit_from_protocols(self, cls: griffe.Class) -> None:
        for protocol in self.protocols:
            if protocol and protocol.keys() <= cls.members.keys():
                for name, docstring in protocol.items():
                    member = cls.members[name]
                    if member.docstring is None and not member.is_alias:
                        member.docstring = griffe.Docstring(docstring.value, parent=member)

    @staticmethod
    def _require(obj: griffe.Object | griffe.Alias) -> None:
        target = obj.final_target if isinstance(obj, griffe.Alias) else obj
        if not (target.docstring and target.docstring.value.strip()):
            where = f"{target.relative_filepath}:{target.lineno}"
            griffe.logger.warning(f"{where}: {obj.path} is public but has no docstring")
