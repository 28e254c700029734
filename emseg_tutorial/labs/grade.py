"""Grading: run a folder of student notebooks and read every exercise check's verdict.

``python -m emseg_tutorial.labs grade DIR`` executes each notebook of ``DIR`` from top to bottom
at the ``ci`` preset (a fresh ``EMSEG_RUNS`` folder shared by the notebooks of one run, so a
later chapter reuses what an earlier one trained; progress bars off; widgets drawn as figures),
with the library that runs the grader, and prints one row per exercise and a total.

An exercise is found the way :func:`~emseg_tutorial.labs.student.find_exercises` finds it: its
exercise cells (solution markers, or the ``exercise`` tag of a student version) and the check
cell after them (``labs.check_<name>(...)``). It is named by the nearest ``### Exercise N.M``
heading above it (else by its check).

The grader trusts only itself: a notebook's check cells are not run. In their place the grader
runs the library's check of that exercise (:data:`~emseg_tutorial.labs.exercises.EXERCISES`, by
its number; else the check the cell names) with the arguments the book gives it, evaluated
among the student's names in a fresh namespace, by a :class:`KernelGrader` made in a first cell
before any student code runs (so rebinding ``labs`` or a ``labs.check_*`` later changes
nothing either). Editing a check cell, to check the library's function instead of the
student's, or to print a verdict, cannot change the grade; a student who patches the library's
modules themselves is beyond what a grader in the same kernel can stop.

Its verdict is what that check printed
(:class:`~emseg_tutorial.labs.result.CheckResult`: ``✓`` passed, ``✗`` failed, ``…`` not done);
an exception in the check cell is ``not done`` when it is ``NotImplementedError`` (an untouched
stub) and ``failed`` otherwise, as is a check cell that printed no verdict (it did not run, or
the notebook stopped before it). An exercise whose own cell raised ``NotImplementedError`` is
``not done`` unless its check passed.

Examples
--------
>>> from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
>>> nb = new_notebook(cells=[
...     new_markdown_cell("### Exercise 9.1: shares"),
...     new_code_cell("### BEGIN SOLUTION\\nx = 1\\n### END SOLUTION"),
...     new_code_cell("labs.check_x(x)", outputs=[new_output("stream", name="stdout", text="✓ x: right.\\n")])])
>>> [(g.exercise, g.check, g.status) for g in grade_executed(nb, "demo.ipynb")]
[('9.1', 'check_x', 'passed')]
"""

from __future__ import annotations

import builtins
import copy
import datetime
import importlib.util
import os
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from ..session import child_environment
from .exercises import ARGUMENTS, EXERCISES
from .result import MARKS
from .student import Exercise, find_exercises

#: An exercise heading in a markdown cell: ``### Exercise 2.3: ...`` (the number is kept).
HEADING = re.compile(r"^#{1,6}\s*Exercise\s+(\d+(?:\.\d+)*)", re.MULTILINE)
#: A check's printed verdict: a mark, the check's title, a colon.
VERDICT = re.compile(rf"^([{''.join(MARKS.values())}]) ([^:\n]+): ?(.*)$", re.MULTILINE)
STATUS = {mark: status for status, mark in MARKS.items()}
#: Session settings of a graded kernel (:func:`~emseg_tutorial.session.child_environment`).
GRADING = {"preset": "ci", "progress": 0, "widgets": "static"}


#: Modules grading needs beyond the library (a kernel runs each notebook), and the extra that brings them.
GRADER_NEEDS = ("nbclient", "ipykernel")
LABS_EXTRA = "pip install 'emseg-tutorial[labs]'"


def check_grader_dependencies() -> None:
    """Raise a one-line ValueError naming the ``labs`` extra when a module grading needs is missing.

    Examples
    --------
    >>> check_grader_dependencies()  # the test environment has them
    """
    missing = [name for name in GRADER_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"grading needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                         f"installed; install {'it' if len(missing) == 1 else 'them'} with {LABS_EXTRA}")


@dataclass(frozen=True)
class ExerciseGrade:
    """The verdict on one exercise of one notebook."""

    notebook: str
    exercise: str
    check: str
    status: str
    message: str


@dataclass
class Gradebook:
    """Every exercise of a folder of notebooks, graded; :meth:`table` prints it, :meth:`to_dict` stores it."""

    directory: str
    grades: list[ExerciseGrade] = field(default_factory=list)
    notebooks: dict[str, dict] = field(default_factory=dict)
    preset: str = "ci"

    def count(self, status: str) -> int:
        """Number of exercises with verdict ``status``."""
        return sum(g.status == status for g in self.grades)

    @property
    def total(self) -> int:
        return len(self.grades)

    def summary(self) -> str:
        """``total: 5 / 12 passed (2 failed, 5 not done)``."""
        return (f"total: {self.count('passed')} / {self.total} passed "
                f"({self.count('failed')} failed, {self.count('not done')} not done)")

    def table(self, width: int = 60) -> str:
        """One row per exercise (notebook, exercise, check, verdict, message) and the total."""
        rows = [("notebook", "exercise", "check", "verdict", "message")]
        rows += [(g.notebook, g.exercise, g.check, g.status,
                  g.message if len(g.message) <= width else g.message[:width - 1] + "…") for g in self.grades]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
        errors = [f"{name}: {info['error']}" for name, info in self.notebooks.items() if info["error"]]
        return "\n".join([*lines, *errors, self.summary()])

    def to_dict(self) -> dict:
        """A gradebook record (JSON-ready)."""
        from .. import __version__

        return {"directory": self.directory, "preset": self.preset, "library_version": __version__,
                "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "passed": self.count("passed"), "failed": self.count("failed"),
                "not_done": self.count("not done"), "total": self.total,
                "score": self.count("passed") / self.total if self.total else 0.0,
                "notebooks": self.notebooks, "exercises": [asdict(g) for g in self.grades]}


def _output_text(outputs: list) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("display_data", "execute_result"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def verdict(outputs: list) -> tuple[str, str]:
    """``(status, message)`` of a check cell from its outputs.

    Examples
    --------
    >>> from nbformat.v4 import new_output
    >>> verdict([new_output("stream", name="stdout", text="… shares: not done yet: fill in f\\n")])
    ('not done', 'not done yet: fill in f')
    >>> verdict([new_output("error", ename="NotImplementedError", evalue="exercise", traceback=[])])
    ('not done', 'NotImplementedError: exercise')
    >>> verdict([])
    ('failed', 'the check printed no verdict (the cell did not run)')
    """
    error = next((o for o in outputs if o.get("output_type") == "error"), None)
    if error is not None:
        status = "not done" if error.get("ename") == "NotImplementedError" else "failed"
        return status, f"{error.get('ename')}: {error.get('evalue')}"
    text = _output_text(outputs)
    match = VERDICT.search(text)
    if match is None:
        return "failed", "the check printed no verdict (the cell did not run)"
    message = [match.group(3).strip()]
    for line in text[match.end():].splitlines()[1:]:  # the message wraps onto lines indented by two spaces
        if not line.startswith("  "):
            break
        message.append(line.strip())
    return STATUS[match.group(1)], " ".join(message)


def numbered_exercises(nb: nbformat.NotebookNode) -> list[tuple[Exercise, str | None]]:
    """Every exercise of ``nb`` with the number of the nearest ``### Exercise N.M`` heading
    above it (since the previous exercise), or ``None``."""
    found, previous = [], -1
    for ex in find_exercises(nb):
        numbers = [m.group(1) for c in nb.cells[previous + 1:ex.solution_cells[0]] if c.cell_type == "markdown"
                   for m in HEADING.finditer(c.source)]
        found.append((ex, numbers[-1] if numbers else None))
        previous = ex.check_cell
    return found


def graded_check(ex: Exercise, number: str | None) -> tuple[str, str | None]:
    """``(check, arguments)`` the grader runs for exercise ``ex``: the book's check of exercise
    ``number``, else the check the cell names; ``arguments`` is ``None`` for a check the library
    does not know."""
    if number in EXERCISES:
        return EXERCISES[number]
    return ex.check, ARGUMENTS.get(ex.check)


def grade_executed(nb: nbformat.NotebookNode, name: str) -> list[ExerciseGrade]:
    """Grade every exercise of an executed notebook ``nb`` (called ``name`` in the rows)."""
    grades = []
    for ex, number in numbered_exercises(nb):
        check = graded_check(ex, number)[0]
        status, message = verdict(nb.cells[ex.check_cell].get("outputs", []))
        stub_raised = any(o.get("output_type") == "error" and o.get("ename") == "NotImplementedError"
                          for i in ex.solution_cells for o in nb.cells[i].get("outputs", []))
        if stub_raised and status != "passed":
            status, message = "not done", "the exercise cell still raises NotImplementedError"
        grades.append(ExerciseGrade(name, number or ex.check, check, status, message))
    return grades


#: The name of the :class:`KernelGrader` in a graded kernel.
GRADER_NAME = "__emseg_grader__"
#: The first cell of every graded run: the library's checks are kept before any student code runs.
CAPTURE_CELL = (f"from emseg_tutorial.labs.grade import KernelGrader as _KernelGrader\n"
                f"{GRADER_NAME} = _KernelGrader()\ndel _KernelGrader")


class KernelGrader:
    """The library's checks, kept when a graded kernel starts, run against the student's names.

    Examples
    --------
    >>> grader = KernelGrader()
    >>> grader.run("check_ratio_for_share", "ratio_for_share",
    ...            {"ratio_for_share": lambda f, s: s * (1 - f) / (f * (1 - s))})
    ✓ ratio for a given share of the loss: ...
    """

    def __init__(self) -> None:
        from . import checks, checks_adapt, checks_beyond

        self.checks = {name: getattr(module, name) for module in (checks, checks_adapt, checks_beyond)
                       for name in module.__all__}

    def run(self, check: str, arguments: str, namespace: dict) -> None:
        """Call ``check`` with ``arguments`` (source text) evaluated among a copy of ``namespace``;
        the check prints its verdict."""
        values = eval(f"({arguments},)", {"__builtins__": builtins}, dict(namespace))  # noqa: S307 - the book's own text
        self.checks[check](*values)


def grader_cell(ex: Exercise, number: str | None) -> str:
    """The source the grader runs in place of the check cell of ``ex``."""
    check, arguments = graded_check(ex, number)
    if arguments is None:
        return f"print({MARKS['failed'] + ' ' + check + ': not a check of emseg_tutorial.labs'!r})"
    return f"{GRADER_NAME}.run({check!r}, {arguments!r}, globals())"


def graded_run(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook the grader executes: ``nb`` with :data:`CAPTURE_CELL` first and every check
    cell replaced by :func:`grader_cell` (so ``run.cells[i + 1]`` is ``nb.cells[i]``)."""
    run = copy.deepcopy(nb)
    for ex, number in numbered_exercises(nb):
        run.cells[ex.check_cell].source = grader_cell(ex, number)
    run.cells.insert(0, new_code_cell(CAPTURE_CELL))
    return run


def _library_root() -> str:
    """The folder holding the ``emseg_tutorial`` package that runs the grader."""
    return str(Path(__file__).resolve().parents[2])


def execute(nb: nbformat.NotebookNode, workdir: Path, env: dict[str, str], timeout: float) -> str | None:
    """Run ``nb`` in place in a fresh kernel, errors kept as outputs, with ``workdir`` as the
    working folder, ``env`` as the kernel's environment and ``timeout`` seconds per cell.

    Returns
    -------
    str or None
        Why the run stopped before the last cell (a cell timed out, the kernel died), or None.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute(env=env, stderr=subprocess.DEVNULL)  # the kernel's own log lines, not the cells' output
    except (CellTimeoutError, DeadKernelError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"stopped early: {type(error).__name__}: {first}"
    return None


def grade_folder(directory: str | Path, *, timeout: float = 600.0, runs: str | Path | None = None) -> Gradebook:
    """Execute every notebook of ``directory`` (name order) at the ``ci`` preset and grade it.

    A notebook whose exercise cells have no check after them (a student deleted it) is not run:
    the gradebook names it, with the reason, and has no rows for it.

    Parameters
    ----------
    directory : str or Path
        A folder of (student) notebooks, or one notebook.
    timeout : float
        Seconds one cell may run.
    runs : str or Path, optional
        ``EMSEG_RUNS`` for the run (default: a fresh temporary folder, removed afterwards).

    Raises
    ------
    FileNotFoundError
        When ``directory`` holds no notebook.
    ValueError
        When a notebook cannot be read, or a module grading needs is missing
        (:func:`check_grader_dependencies`, before anything runs).
    """
    check_grader_dependencies()
    directory = Path(directory)
    paths = [directory] if directory.suffix == ".ipynb" else sorted(directory.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks in {directory}")
    notebooks = {}
    for path in paths:
        try:
            notebooks[path] = nbformat.read(path, as_version=4)
        except Exception as error:  # noqa: BLE001 - any unreadable file: one clear line
            raise ValueError(f"{path}: not a readable notebook ({type(error).__name__}: {error})") from error
    book = Gradebook(directory=str(directory), preset=GRADING["preset"])
    with tempfile.TemporaryDirectory(prefix="emseg-grade-") as tmp:
        env = child_environment(**GRADING, runs=runs or Path(tmp) / "runs")
        env.update(MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(filter(None, [_library_root(), env.get("PYTHONPATH")])))
        for path, nb in notebooks.items():
            try:
                find_exercises(nb)
            except ValueError as error:
                book.notebooks[path.name] = {"seconds": 0.0, "error": f"not graded: {error}"}
                continue
            start = time.perf_counter()
            run = graded_run(nb)
            stopped = execute(run, Path(tmp), env, timeout)
            for cell, ran in zip(nb.cells, run.cells[1:]):
                if cell.cell_type == "code":
                    cell.outputs = ran.get("outputs", [])
            book.notebooks[path.name] = {"seconds": round(time.perf_counter() - start, 1), "error": stopped}
            book.grades += grade_executed(nb, path.name)
    return book
