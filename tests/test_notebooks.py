"""Notebooks (the chapters and their student versions in book/student/) are committed without
outputs and follow the book's conventions."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").rglob("*.ipynb"))
STUDENT = ROOT / "book" / "student"


def _id(path: Path) -> str:
    return path.relative_to(ROOT / "book").as_posix()


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_first_code_cell_is_the_setup(path):
    nb = json.loads(path.read_text())
    first = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "emseg_tutorial.setup(" in first and "pip install" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_in_table_of_contents(path):
    toc = (ROOT / "_toc.yml").read_text()
    if path.parent == STUDENT:  # a student version: its chapter is in the book, it is not
        assert (ROOT / "book" / path.name).exists(), f"{_id(path)} has no chapter book/{path.name}"
        assert f"book/student/{path.stem}" not in toc
    else:
        assert f"book/{path.stem}" in toc
