"""No import circle inside ``edge_agent``: every ``import`` statement counts, wherever it stands.

Module level, inside ``if TYPE_CHECKING:`` and inside functions: a deferred import only hides a
circle from Python's import machinery, not from the reader (today's app <-> reload pair was one).
The graph comes from the source files with ``ast`` (nothing is imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

import edge_agent

PACKAGE_ROOT = Path(edge_agent.__file__).resolve().parent


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file for every module of the package at ``root`` (``pkg/__init__.py`` is ``pkg``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        names[".".join(parts).removesuffix(".__init__")] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` (at ``path``) imports anywhere in its file.

    Each import counts once, for the most specific module it names (the parent packages Python
    imports on the way are left out: they are near-empty ``__init__`` files).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # from a.b import c: the module a.b.c if there is one, else the names inside a.b
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_edge_agent_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE_ROOT)
    assert "edge_agent.service.app" in graph and "edge_agent.service.reload" in graph["edge_agent.service.app"]
    assert find_cycles(graph) == []


def test_the_walk_sees_deferred_and_type_checking_imports(tmp_path: Path) -> None:
    """The finder itself: a circle closed by a function-level and a TYPE_CHECKING import is found."""
    package = tmp_path / "pkg"
    (package / "service").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "service" / "__init__.py").write_text("")
    (package / "service" / "app.py").write_text("def reload():\n    from pkg.service.reload import plan\n")
    (package / "service" / "reload.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .app import App\n"
    )
    (package / "service" / "other.py").write_text("from pkg.service import app\nimport pkg.service.reload\n")
    graph = import_graph(package)
    assert graph["pkg.service.other"] == {"pkg.service.app", "pkg.service.reload"}
    assert find_cycles(graph) == [["pkg.service.app", "pkg.service.reload"]]
