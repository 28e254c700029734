"""Student versions of the chapters: every solution replaced by a stub.

The committed notebooks are the instructor version. In an exercise cell the solution sits
between two marker lines::

    def class_shares(labels):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

Inside a function the student version keeps the signature and raises
``NotImplementedError`` (the check then reports "not done yet"); at the top level of a cell
each name the solution assigns becomes ``name = None``, so a student notebook still runs from
top to bottom. Exercise cells carry the tags ``solution`` and ``hide-input`` (the rendered
book folds them away); the student version drops both tags and tags the cell ``exercise``.
A cell tagged ``solution`` without markers (a written answer) is left out entirely.

Examples
--------
>>> print(strip_solutions('''def f(x):
...     ### BEGIN SOLUTION
...     return 2 * x
...     ### END SOLUTION'''))
def f(x):
    # YOUR CODE HERE
    raise NotImplementedError("exercise: complete f")
>>> print(strip_solutions('''### BEGIN SOLUTION
... rarest, share = "glia", 0.03
... ### END SOLUTION'''))
# YOUR ANSWER HERE
rarest = None
share = None
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
#: Tags of an instructor's exercise cell, removed in the student version.
SOLUTION_TAGS = ("solution", "hide-input")
CHECK_CALL = re.compile(r"labs\.(check_\w+)\(")


def has_solution(source: str) -> bool:
    """True when ``source`` holds a solution marker."""
    return BEGIN in source or END in source


def _assigned_names(block: str) -> list[str]:
    """Names bound at the top level of ``block`` (assignments), in order, without repeats."""
    try:
        tree = ast.parse(textwrap.dedent(block))
    except SyntaxError as error:
        raise ValueError(f"solution block is not valid Python on its own: {error}") from error
    names: list[str] = []

    def add(target: ast.AST) -> None:
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                add(element)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                add(target)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target)
    return names


def _enclosing_function(lines: list[str], indent: int) -> str:
    """Name of the last ``def`` above, indented less than ``indent``."""
    for line in reversed(lines):
        match = re.match(r"(\s*)(?:async\s+)?def\s+(\w+)\s*\(", line)
        if match and len(match.group(1)) < indent:
            return match.group(2)
    return "this function"


def _stub(block: list[str], indent: str, before: list[str]) -> list[str]:
    if indent:
        name = _enclosing_function(before, len(indent))
        return [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("exercise: complete {name}")']
    names = _assigned_names("\n".join(block))
    return ["# YOUR ANSWER HERE"] + [f"{name} = None" for name in names]


def strip_solutions(source: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of ``source`` by a stub.

    Raises
    ------
    ValueError
        On a marker without its partner or a nested block.
    """
    out: list[str] = []
    block: list[str] | None = None
    indent = ""
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker.startswith(BEGIN):
            if block is not None:
                raise ValueError(f"line {number}: {BEGIN} inside another solution block")
            block, indent = [], line[:len(line) - len(line.lstrip())]
        elif marker.startswith(END):
            if block is None:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            out.extend(_stub(block, indent, out))
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of notebook ``nb`` (a copy): stubs, no solution tags, no outputs."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if "solution" in tags and not has_solution(cell.source):
            continue  # a written answer: instructors only
        if has_solution(cell.source):
            cell.source = strip_solutions(cell.source)
            tags = [t for t in tags if t not in SOLUTION_TAGS] + ["exercise"]
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    return nb


def write_student_versions(source: str | Path, out: str | Path) -> list[Path]:
    """Write the student version of every notebook in folder ``source`` (or of one notebook) to ``out``.

    Returns
    -------
    list of Path
        The notebooks written, in name order.
    """
    source, out = Path(source), Path(out)
    paths = [source] if source.suffix == ".ipynb" else sorted(source.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks in {source}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        target = out / path.name
        nbformat.write(student_notebook(nb), target)
        written.append(target)
    return written


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: its solution cells and the check cell after them."""

    solution_cells: tuple[int, ...]
    check_cell: int
    check: str


def find_exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The exercises of ``nb``: exercise cells (with solution markers, or tagged ``exercise`` in a
    student version), each group followed by a check cell (a code cell calling
    ``labs.check_<name>(...)``)."""
    found, pending = [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if has_solution(cell.source) or "exercise" in cell.metadata.get("tags", []):
            pending.append(i)
        elif pending and (match := CHECK_CALL.search(cell.source)):
            found.append(Exercise(tuple(pending), i, match.group(1)))
            pending = []
    if pending:
        raise ValueError(f"solution cells {pending} are not followed by a labs.check_...() cell")
    return found
