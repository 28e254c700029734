"""The package's import graph: the layer order of README.md holds, and no module imports itself back.

A cycle hidden by an import inside a function still couples the modules both ways (neither can
be understood, tested or moved without the other), and an import inside a function still makes
the lower layer need the higher one, so every ``import`` / ``from ... import`` in a module's
AST counts, wherever it stands. The layer order is read from README.md's Architecture block,
which stays the one statement of it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import emseg_tutorial

ROOT = Path(emseg_tutorial.__file__).parent
PACKAGE = ROOT.name
README = ROOT.parent / "README.md"
#: Names the package's ``__init__`` imports when first used: ``from emseg_tutorial import setup``
#: imports the session, though no ``import`` statement says so.
LAZY = emseg_tutorial._LAZY


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
                if base == PACKAGE and alias.name in LAZY:
                    full = f"{PACKAGE}.{LAZY[alias.name]}"
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



# --------------------------------------------------------------------------- layers


def read_layers(text: str, packages: set[str], modules: set[str]) -> list[set[str]]:
    """The layers of README's Architecture block, lowest first, as sets of top-level names.

    Each line starting at the margin opens a layer; its names before the first two spaces are
    its packages (``name/``) and top-level modules. ``core`` stands for every top-level module
    its text (all its lines) names. A name that is not in the package raises AssertionError.
    """
    start = text.index("## Architecture")
    block = text[text.index("```\n", start) + 4:]
    block = block[:block.index("```")]
    layers: list[tuple[list[str], str]] = []
    for line in block.splitlines():
        if line and not line[0].isspace():
            layers.append((line.split("  ")[0].split(), line))
        elif line.strip() and layers:
            layers[-1] = (layers[-1][0], layers[-1][1] + " " + line)
    out = []
    for heads, body in layers:
        if heads == ["core"]:
            members = {w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", body) if w in modules}
        else:
            members = set()
            for head in heads:
                name = head.rstrip("/")
                known = packages if head.endswith("/") else modules
                assert name in known, f"README layer block names {head!r}, which is not a " \
                                      f"{'package' if head.endswith('/') else 'module'} of {PACKAGE}"
                members.add(name)
        out.append(members)
    return out


def _top_level() -> tuple[set[str], set[str]]:
    """``(packages, modules)`` directly inside the package."""
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    return packages, modules


def layer_index() -> dict[str, int]:
    """``{top-level name: its layer's position}`` from README.md (each name in exactly one layer)."""
    packages, modules = _top_level()
    found: dict[str, int] = {}
    for i, members in enumerate(read_layers(README.read_text(), packages, modules)):
        for name in members:
            assert name not in found, f"README's layer block puts {name} in two layers"
            found[name] = i
    return found


def layer_violations(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import from a module to a module of a later layer, one line each."""
    def top(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None  # the package's own __init__ is in no layer

    bad = []
    for module, targets in sorted(graph.items()):
        if top(module) is None:
            continue
        for target in sorted(targets):
            if top(target) is not None and layers[top(target)] > layers[top(module)]:
                bad.append(f"{module} (layer {layers[top(module)]}: {top(module)}) imports {target} "
                           f"(layer {layers[top(target)]}: {top(target)})")
    return bad


def test_layer_reader_parses_heads_and_core():
    text = ("## Architecture\n\n```\ncore      labels (codes), metrics and\n          weights\n"
            "models/   unet\nviz/ labs/  two packages\ncli booktools  two modules\n```\n")
    layers = read_layers(text, {"models", "viz", "labs"}, {"labels", "metrics", "weights", "cli", "booktools",
                                                            "style"})
    assert layers == [{"labels", "metrics", "weights"}, {"models"}, {"viz", "labs"}, {"cli", "booktools"}]


def test_layer_checker_catches_an_upward_function_level_import():
    graph = {f"{PACKAGE}.train.supervised": {f"{PACKAGE}.paper.stages"}, f"{PACKAGE}.paper.stages": set()}
    assert len(layer_violations(graph, {"train": 0, "paper": 1})) == 1
    assert layer_violations(graph, {"train": 1, "paper": 0}) == []


def test_every_module_is_in_a_layer_of_the_readme():
    layers = layer_index()
    graph = import_graph()
    missing = sorted({m.split(".")[1] for m in graph if m.count(".") >= 1} - set(layers))
    assert not missing, f"not in README's layer block (Architecture): {missing}"


def test_the_package_init_imports_nothing_of_the_package():
    assert import_graph()[PACKAGE] == set()   # its names are imported when first used (LAZY)


def test_imports_follow_the_readme_layer_order():
    bad = layer_violations(import_graph(), layer_index())
    assert not bad, "imports against README's layer order (function-level ones included):\n" + "\n".join(bad)


def test_metrics_import_without_torch():
    code = "import emseg_tutorial.metrics, sys; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_package_names_are_imported_when_first_used():
    code = ("import sys, emseg_tutorial\n"
            "assert 'emseg_tutorial.session' not in sys.modules and 'torch' not in sys.modules\n"
            "assert 'load_checkpoint' in dir(emseg_tutorial)\n"
            "from emseg_tutorial import load_checkpoint, setup\n"
            "import emseg_tutorial.store, emseg_tutorial.session\n"
            "assert load_checkpoint is emseg_tutorial.store.load_checkpoint and setup is emseg_tutorial.session.setup\n"
            "try:\n    emseg_tutorial.no_such_name\nexcept AttributeError:\n    pass\n"
            "else:\n    raise AssertionError('no AttributeError')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
