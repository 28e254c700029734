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

Students read these notebooks in Jupyter or Colab, not in the built book, so their Markdown is
made plain (:func:`plain_markdown`): MyST roles become text (``{term}`` and ``{ref}`` their
words, ``{cite}`` "(Author et al. Year)" from the book's ``references.bib``), admonitions become
quotes, and each glued number ``{glue:text}`key:fmt``` becomes ``[key]``, printed from the
student's own run by a code cell after that Markdown cell
(:func:`emseg_tutorial.glue.show_glued`), or after the code cell that computes it when that
comes further down (chapter 2's opening text).

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
from nbformat.v4 import new_code_cell

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
#: Tags of an instructor's exercise cell, removed in the student version.
SOLUTION_TAGS = ("solution", "hide-input")
CHECK_CALL = re.compile(r"labs\.(check_\w+)\(")
#: A MyST role: ``{name}`content```.
ROLE = re.compile(r"\{(?P<role>[a-z][a-z:\-]*)\}`(?P<body>[^`]*)`")
#: A fenced MyST directive (``{tip}``, ``{admonition} Title``, ...) with ``` or ::: fences.
DIRECTIVE = re.compile(r"^(?P<fence>```+|:::+)\{(?P<name>[a-z\-]+)\}[ \t]*(?P<title>[^\n]*)\n"
                       r"(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)
#: The first line of the code cell that prints a Markdown cell's glued numbers.
GLUE_CELL = "# The numbers of the text above, from your own run (the book shows them in place):"
#: The same for numbers of Markdown further up that the cell before this one computes.
GLUE_CELL_LATER = ("# Numbers of the text further up (shown there as [key]), computed by the cell above, "
                   "from your own run:")
#: A glue call with a literal key, ``glue("key", ...)`` (an f-string key is not literal).
GLUE_CALL = re.compile(r"""\bglue\(\s*(["'])(?P<key>[^"'{}]+)\1""")


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


def read_references(path: str | Path) -> dict[str, str]:
    """``{key: "Author et al. Year"}`` for every entry of the BibTeX file ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> bib = os.path.join(tempfile.mkdtemp(), "refs.bib")
    >>> _ = open(bib, "w").write("@misc{roy2020,\\n  author = {Roy, Shreya and Chakraborty, Anirban},\\n"
    ...                          "  year = {2020},\\n}\\n")
    >>> read_references(bib)
    {'roy2020': 'Roy and Chakraborty 2020'}
    """
    text = Path(path).read_text(encoding="utf-8")
    found = {}
    for entry in re.split(r"^@", text, flags=re.MULTILINE)[1:]:
        key = re.match(r"\w+\s*\{\s*([^,\s]+)\s*,", entry)
        if key is None:
            raise ValueError(f"{path}: an entry without a key near {entry[:40]!r}")
        field = {name: re.search(rf"\b{name}\s*=\s*\{{((?:[^{{}}]|\{{[^{{}}]*\}})*)\}}", entry, re.IGNORECASE)
                 for name in ("author", "year")}
        surnames = [a.split(",")[0].strip().split()[-1] if "," not in a else a.split(",")[0].strip()
                    for a in re.split(r"\s+and\s+", field["author"].group(1))] if field["author"] else [key.group(1)]
        who = (surnames[0] if len(surnames) == 1 else " and ".join(surnames) if len(surnames) == 2
               else f"{surnames[0]} et al.")
        year = field["year"].group(1) if field["year"] else ""
        found[key.group(1)] = re.sub(r"[{}]", "", f"{who} {year}".strip())
    return found


def _plain_role(role: str, body: str, references: dict[str, str] | None, glued: list[str]) -> str:
    """The plain text of one MyST role (a glue role also adds its placeholder to ``glued``)."""
    if role in ("glue", "glue:text", "glue:any"):
        glued.append(body.strip())
        key = body.strip().rpartition("::")[2].partition(":")[0]
        return f"`[{key}]`"
    if role.startswith("cite"):
        keys = [k.strip() for k in body.split(",") if k.strip()]
        names = [(references or {}).get(k, k) for k in keys]
        if role == "cite:t":
            return "; ".join(f"{n.rpartition(' ')[0]} ({n.rpartition(' ')[2]})" for n in names)
        return "(" + "; ".join(names) + ")"
    if role == "math":
        return f"${body}$"
    if role == "eq":
        return f"({body})"
    text = re.match(r"\s*(.*?)\s*<[^<>]*>\s*$", body, re.DOTALL)   # {ref}`words <target>`
    return text.group(1) if text else body


def _plain_directive(match: re.Match) -> str:
    """A fenced directive as a Markdown quote: bold title (or its name), then its body."""
    lines = [ln for ln in match.group("body").splitlines() if not re.match(r"\s*:\w+:", ln)]  # options
    title = match.group("title").strip() or match.group("name").replace("-", " ").capitalize()
    return "\n".join([f"> **{title}**", ">"] + [f"> {ln}".rstrip() for ln in lines])


def plain_markdown(source: str, references: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """``source`` readable in Jupyter and Colab, and the glue placeholders it held (``key:fmt``).

    Examples
    --------
    >>> plain_markdown("About {glue:text}`share:.0%` are walls {cite}`roy2020`; see {term}`M1`.",
    ...                {"roy2020": "Roy and Chakraborty 2020"})
    ('About `[share]` are walls (Roy and Chakraborty 2020); see M1.', ['share:.0%'])
    >>> plain_markdown("```{tip}\\nRun it twice.\\n```")[0]
    '> **Tip**\\n>\\n> Run it twice.'
    """
    glued: list[str] = []
    source = DIRECTIVE.sub(_plain_directive, source)
    source = ROLE.sub(lambda m: _plain_role(m.group("role"), m.group("body"), references, glued), source)
    return source, glued


def _glue_cell(placeholders: list[str], after: nbformat.NotebookNode, *, later: bool = False) -> nbformat.NotebookNode:
    """The cell printing ``placeholders``; its id follows from the cell ``after`` (the same every build).
    ``later``: the numbers belong to Markdown further up (they are computed by ``after``)."""
    args = ", ".join(repr(p) for p in placeholders)
    cell = new_code_cell(f"{GLUE_CELL_LATER if later else GLUE_CELL}\nfrom emseg_tutorial.glue import show_glued\n\n"
                         f"show_glued({args})")
    if "id" in after:
        cell["id"] = f"{after['id'][:57]}-later" if later else f"{after['id'][:58]}-glue"
    else:
        cell.pop("id", None)
    return cell


def _glued_keys(source: str) -> set[str]:
    """The keys a code cell hands to ``glue`` as string literals (``glue("key", ...)``)."""
    return {m.group("key") for m in GLUE_CALL.finditer(source)}


def _placement(cells: list[nbformat.NotebookNode], wanted: dict[int, list[str]]) -> dict[int, list[tuple[str, bool]]]:
    """Where each glue placeholder is printed: ``{cell index: [(placeholder, later), ...]}``.

    ``wanted`` maps a cell index to the placeholders of the Markdown it follows. A placeholder
    whose key a code cell further down glues literally, and none up to there, moves after that
    code cell (``later`` True): printed where it was wanted, it could only say "not computed yet".
    """
    glued_by = {i: _glued_keys(c.source) for i, c in enumerate(cells) if c.cell_type == "code"}
    placed: dict[int, list[tuple[str, bool]]] = {}
    for at, placeholders in sorted(wanted.items()):
        for placeholder in placeholders:
            page, _, rest = placeholder.rpartition("::")
            key = rest.partition(":")[0]
            where = next((i for i, keys in glued_by.items() if key in keys), at)
            later = not page and where > at
            placed.setdefault(where if later else at, []).append((placeholder, later))
    return placed


def student_notebook(nb: nbformat.NotebookNode,
                     references: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The student version of notebook ``nb`` (a copy): stubs, no solution tags, no outputs,
    plain Markdown (:func:`plain_markdown`, citations from ``references``) and a cell printing
    the glued numbers after each Markdown cell that shows some (after the first code cell, the
    one that installs and sets up, when the Markdown comes before it; after the code cell that
    computes a number when that comes later, see :func:`_placement`)."""
    nb = copy.deepcopy(nb)
    cells = []
    wanted: dict[int, list[str]] = {}   # cell index -> glue placeholders to print after it
    waiting: list[str] = []   # glue placeholders of Markdown before the first code cell
    seen_code = False
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
        glued: list[str] = []
        if cell.cell_type == "markdown":
            cell.source, glued = plain_markdown(cell.source, references)
        cells.append(cell)
        if cell.cell_type == "code" and not seen_code:
            seen_code = True
            glued, waiting = waiting, []
        elif not seen_code:
            waiting += glued
            glued = []
        if glued:
            wanted[len(cells) - 1] = glued
    placed = _placement(cells, wanted)
    nb.cells = []
    for i, cell in enumerate(cells):
        nb.cells.append(cell)
        here = placed.get(i, [])
        for later in (False, True):
            group = [p for p, deferred in here if deferred is later]
            if group:
                nb.cells.append(_glue_cell(group, cell, later=later))
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
    bib = (source if source.is_dir() else source.parent) / "references.bib"
    references = read_references(bib) if bib.exists() else None
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        target = out / path.name
        nbformat.write(student_notebook(nb, references), target)
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
