"""Notebooks (the chapters and their student versions in book/student/) are committed without
outputs, start with the setup, are the book's table of contents, and use only library names that
exist (a renamed function breaks the test here, not the book build)."""

import ast
import importlib
import json
from pathlib import Path

import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))
STUDENT = BOOK / "student"
NOTEBOOKS = [*CHAPTERS, *sorted(STUDENT.glob("*.ipynb"))]


def _id(path: Path) -> str:
    return path.relative_to(BOOK).as_posix()


def _code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _tree(source: str) -> ast.Module:
    """A code cell as Python (magics such as ``%pip`` become ``get_ipython()`` calls)."""
    return ast.parse(TransformerManager().transform_cell(source))


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


def test_the_table_of_contents_is_the_chapters():
    files = _toc_files()
    assert len(files) == len(set(files)), f"a page is listed twice: {files}"
    for name in files:
        assert [p for p in ROOT.glob(name + ".*") if p.suffix in (".ipynb", ".md")], f"_toc.yml: {name} has no page"
    listed = {name for name in files if (ROOT / f"{name}.ipynb").exists()}
    assert listed == {f"book/{p.stem}" for p in CHAPTERS}                  # every chapter, nothing else
    assert not [name for name in files if name.startswith("book/student/")]  # student copies stay out
    chapters = [name for name in files if name in listed]
    assert chapters == sorted(chapters), "chapters are listed in the book's order (01, 02, ...)"


def test_every_chapter_has_a_student_version_and_back():
    assert {p.name for p in CHAPTERS} == {p.name for p in STUDENT.glob("*.ipynb")}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_first_code_cell_installs_and_calls_setup(path):
    tree = _tree(_code_cells(path)[0])
    calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert "emseg_tutorial.setup" in calls, f"{path.name}: the first code cell does not call emseg_tutorial.setup"
    magics = [node.args[1].value for node in ast.walk(tree) if isinstance(node, ast.Call)
              and ast.unparse(node.func).endswith("run_line_magic") and isinstance(node.args[1], ast.Constant)]
    assert any(m.startswith("install") for m in magics), f"{path.name}: no %pip install where the library is missing"


def _library_names(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from emseg_tutorial... import name`` and every attribute a
    chapter reads of an imported library module (``viz.weight_maps_figure``, ``weights.x``)."""
    found, modules = [], {}
    trees = [_tree(cell) for cell in _code_cells(path)]
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "emseg_tutorial":
                for alias in node.names:
                    found.append((node.module, alias.name))
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "emseg_tutorial":  # `import a.b` binds a, `as c` binds a.b
                        bound = alias.name if alias.asname else "emseg_tutorial"
                        modules[alias.asname or "emseg_tutorial"] = bound
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                found.append((modules[node.value.id], node.attr))
    return found


def _resolve(module: str, name: str) -> bool:
    try:
        obj = importlib.import_module(module)
    except ImportError:  # ``from emseg_tutorial import viz`` then ``viz.x``: module is "emseg_tutorial.viz"
        parent, _, attr = module.rpartition(".")
        obj = getattr(importlib.import_module(parent), attr, None)
        if obj is None:
            return False
    if hasattr(obj, name):
        return True
    try:  # a submodule not imported by its package's __init__
        importlib.import_module(f"{module}.{name}")
        return True
    except ImportError:
        return False


@pytest.mark.parametrize("path", CHAPTERS, ids=_id)
def test_every_library_name_a_chapter_uses_exists(path):
    used = _library_names(path)
    assert used, f"{path.name} uses no library name"
    missing = sorted({f"{m}.{n}" for m, n in used if not _resolve(m, n)})
    assert not missing, f"{path.name} uses names the library does not have: {missing}"
