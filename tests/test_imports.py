"""The package's import graph: no module imports itself back, even through a function-level import.

A cycle hidden by an import inside a function still couples the modules both ways (neither can
be understood, tested or moved without the other), so every ``import`` / ``from ... import``
in a module's AST counts, wherever it stands.
"""

from __future__ import annotations

import ast
from pathlib import Path

import emseg_tutorial

ROOT = Path(emseg_tutorial.__file__).parent
PACKAGE = ROOT.name


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (a package is its ``__init__``)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its AST (relative imports resolved).

    ``from X import y`` counts as importing ``X.y`` when that is a module, else ``X``. Importing
    ``a.b.c`` also runs the ``__init__`` of ``a.b``: those parents count, except the packages
    that contain ``name`` itself (they are already being imported when ``name`` runs).
    """
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    edges = set()
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
    for target in targets:
        if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
            continue
        while target and target not in modules:  # "pkg.mod.attr" -> "pkg.mod"
            target = target.rpartition(".")[0]
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            parent = ".".join(parts[:i])
            if parent in modules and parent != name and (parent == target or parent not in ancestors):
                edges.add(parent)
    return edges


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the whole package."""
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert f"{PACKAGE}.data.readers" in graph[f"{PACKAGE}.data.real"]
    assert f"{PACKAGE}.data.real" in graph[f"{PACKAGE}.data.sources"]   # imported inside load_domain
    assert f"{PACKAGE}.data.errors" in graph[f"{PACKAGE}.data.registry"]


def test_cycle_finder():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (including function-level imports):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)
