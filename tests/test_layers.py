"""The package's folders are its flow: imports run one way, with no cycles, lazy ones included.

Every import in the package (module level, inside functions, under ``TYPE_CHECKING``)
is read from the source with ``ast`` and checked against ``ALLOWED``: which layers each
layer may import. docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "audit_middleware"

# layer -> the layers it may import (besides itself). Bottom to top.
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "logs": frozenset(),
    "env": frozenset(),
    "model": frozenset({"errors"}),
    "capture": frozenset({"model", "errors", "env", "logs"}),
    "processing": frozenset({"capture", "model", "errors", "logs"}),
    "opensearch": frozenset({"model", "errors", "env", "logs"}),
    "sqlite": frozenset({"model", "errors", "env", "logs"}),
    "sinks": frozenset({"processing", "capture", "opensearch", "sqlite", "model", "errors", "env", "logs"}),
    "query": frozenset({"opensearch", "sqlite", "model", "errors", "env"}),
    "config": frozenset({"capture", "processing", "sinks", "model", "errors", "env"}),
    "reads": frozenset({"query", "sinks", "processing", "model", "errors"}),
    "testing": frozenset({"config", "sinks", "capture", "model"}),
    "cli": frozenset({"reads", "query", "opensearch", "sqlite", "sinks", "model", "errors", "env"}),
    "frameworks": frozenset({"config", "capture", "processing", "sinks", "model", "errors", "env", "logs"}),
    # the Audit Logs page: reads through query, records reads through reads, finds the installed
    # sink (config) and the reader's request (capture.context); its framework mounts live here too
    "viewer": frozenset({"reads", "query", "config", "capture", "processing", "sinks", "model", "errors"}),
    "shims": frozenset({"frameworks"}),
    "api": frozenset(
        {"config", "capture", "processing", "model", "errors", "cli", "frameworks", "sinks", "query"}
    ),
}
# Modules kept at their old paths, re-exporting the framework adapters.
SHIMS = {"flask", "fastapi", "structlog", "django"}
LONG_MODULE_LINES = 400


def layer_of(module: str) -> str:
    """The layer of a module name such as ``audit_middleware.sinks.sqlite``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "api"
    return "shims" if parts[1] in SHIMS else parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """Every ``audit_middleware`` module ``path`` imports, with the line: lazy and type-only ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                source = ".".join(prefix + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # "from pkg import sub" imports the submodule sub when it is one
            targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "audit_middleware" or target.startswith("audit_middleware."):
                yield target, node.lineno


def _known_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line}, for modules of the package."""
    known = _known_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        edges: dict[str, int] = {}
        for target, line in package_imports(path, module):
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module and not _is_parent_package(resolved, module):
                edges.setdefault(resolved, line)
        graph[module] = edges
    return graph


def _is_parent_package(candidate: str, module: str) -> bool:
    # Importing a.b.c runs a/__init__ and a/b/__init__ first; that is no edge of the flow.
    return module.startswith(candidate + ".")


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    """Imports against the flow, as ``module:line -> target (layer -> layer)``."""
    found = []
    for module, edges in graph.items():
        here = layer_of(module)
        for target, line in edges.items():
            there = layer_of(target)
            if there != here and there not in ALLOWED[here]:
                found.append(f"{module}:{line} imports {target} ({here} -> {there})")
    return sorted(found)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_belongs_to_a_known_layer():
    """A new top-level module or package gets a place in ALLOWED before it can be imported."""
    unknown = {layer_of(module) for module in _known_modules()} - set(ALLOWED)
    assert not unknown


def test_no_import_runs_against_the_flow():
    """model <- capture <- processing <- sinks; query and CLI apart; frameworks at the edge."""
    assert layer_violations(import_graph()) == []


def test_no_import_cycles_lazy_and_type_only_imports_included():
    """No two modules import each other, directly or around a circle."""
    assert cycles(import_graph()) == []


def test_the_checks_catch_an_import_against_the_flow():
    """The checker is not blind: a capture module importing a sink, and a cycle, are both reported."""
    graph = import_graph()
    graph["audit_middleware.capture.recorder"] = {
        **graph["audit_middleware.capture.recorder"],
        "audit_middleware.sinks.sqlite": 1,
    }
    assert layer_violations(graph) == [
        "audit_middleware.capture.recorder:1 imports audit_middleware.sinks.sqlite (capture -> sinks)"
    ]
    graph["audit_middleware.model.ids"] = {"audit_middleware.model.actions": 1}
    assert ["audit_middleware.model.actions", "audit_middleware.model.ids"] in cycles(graph)


def test_lazy_and_type_checking_imports_are_seen(tmp_path: Path):
    """Imports inside functions and under TYPE_CHECKING count as much as the others."""
    source = tmp_path / "audit_middleware" / "capture" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from audit_middleware.sinks import Sink\n"
        "def later():\n    from ..query import store\n"
    )
    found = {target for target, _ in package_imports(source, "audit_middleware.capture.probe")}
    assert {"audit_middleware.sinks", "audit_middleware.query.store"} <= found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE))
)
def test_long_modules_say_why_at_the_top(path: Path):
    """A module of more than about 400 lines says in its docstring why it is one module."""
    text = path.read_text(encoding="utf-8")
    if text.count("\n") <= LONG_MODULE_LINES:
        return
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert "long because" in docstring, f"{path.name}: {text.count(chr(10))} lines and no reason given"
