"""The grader: verdicts read from check outputs, exercises named by their headings, and whole
runs: the instructor notebooks score full marks, the untouched student notebooks zero.

The two whole runs execute every chapter at the ``ci`` preset in a kernel (about a minute or two
each on 2 cores); each runs once per test session (module-scoped fixtures) and is marked
``slow`` (``make test`` runs it; ``-m "not slow"`` leaves it out).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from emseg_tutorial.labs.__main__ import main
from emseg_tutorial.labs.grade import grade_executed, grade_folder, verdict
from emseg_tutorial.labs.student import find_exercises

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
STUDENT = ROOT / "book" / "student"


def _stdout(text: str) -> list:
    return [new_output("stream", name="stdout", text=text)]


@pytest.mark.parametrize("outputs, expected", [
    (_stdout("✓ class shares: match the library on 3 label arrays.\n"), ("passed", "match the library on 3 label arrays.")),
    (_stdout("some progress line\n✗ Jaccard: you returned recall\n  (TP / row sum). Hint: divide by\n  the union.\nnext\n"),
     ("failed", "you returned recall (TP / row sum). Hint: divide by the union.")),
    (_stdout("… shares: not done yet: replace the stub\n"), ("not done", "not done yet: replace the stub")),
    ([new_output("error", ename="NotImplementedError", evalue="exercise: complete f", traceback=[])],
     ("not done", "NotImplementedError: exercise: complete f")),
    ([new_output("error", ename="NameError", evalue="name 'f' is not defined", traceback=[])],
     ("failed", "NameError: name 'f' is not defined")),
    ([new_output("execute_result", data={"text/plain": "CheckResult(...)"}, execution_count=1)],
     ("failed", "the check printed no verdict (the cell did not run)")),
], ids=["passed", "failed-wrapped", "not-done", "stub-raised", "error", "no-verdict"])
def test_verdict_from_check_outputs(outputs, expected):
    assert verdict(outputs) == expected


def _exercise(number: str | None, check: str, output: str) -> list:
    cells = [new_markdown_cell(f"Some text.\n\n### Exercise {number}: a title\n\nDo it.")] if number else []
    return cells + [new_code_cell(f"### BEGIN SOLUTION\nx = 1\n### END SOLUTION", metadata={"tags": ["solution"]}),
                    new_code_cell(f"labs.{check}(x)", outputs=_stdout(output))]


def test_exercises_are_named_by_the_nearest_heading_or_their_check():
    nb = new_notebook(cells=[new_markdown_cell("### Exercise 9.9: an old heading, before the first check"),
                             *_exercise("8.1", "check_a", "✓ a: fine\n"),
                             *_exercise("8.3", "check_new_one", "✗ new: wrong\n"),   # a newly added exercise
                             *_exercise("3.1", "check_rarest_class", "✗ b: wrong\n"),  # the book's 3.1: its check
                             *_exercise(None, "check_c", "… c: not done yet\n")])    # no heading of its own
    grades = grade_executed(nb, "02.ipynb")
    assert [(g.exercise, g.check, g.status) for g in grades] == [
        ("8.1", "check_a", "passed"), ("8.3", "check_new_one", "failed"), ("3.1", "check_jaccard", "failed"),
        ("check_c", "check_c", "not done")]


def test_cli_refuses_bad_input(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["grade", str(tmp_path)]) == 2
    assert "no notebooks" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert main(["grade", str(tmp_path)]) == 2
    assert "not a readable notebook" in capsys.readouterr().err
    assert main(["grade", str(tmp_path), "--timeout", "0"]) == 2
    assert main(["grade", str(tmp_path), "--json", str(tmp_path / "book.json")]) == 2
    assert "among the notebooks" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["nbclient", "ipykernel"])
def test_grader_without_its_dependencies_names_the_labs_extra(missing, tmp_path, capsys, monkeypatch):
    """Issue 24: nbclient came only with the book extra; ``[test]`` installs failed with ModuleNotFoundError."""
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), tmp_path / "a.ipynb")
    monkeypatch.setitem(sys.modules, missing, None)  # importlib.util.find_spec then finds nothing
    assert main(["grade", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: grading needs {missing}, which is not installed; install it with "
                   "pip install 'emseg-tutorial[labs]'")


def test_labs_and_test_extras_declare_the_grader_dependencies():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("labs", "test"):
        names = {re.match(r"[A-Za-z0-9_.\-]+", d).group(0).lower() for d in extras[extra]}
        assert {"nbclient", "nbformat", "ipykernel"} <= names, extra


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_grader_timeout_must_be_finite(value, tmp_path, capsys):
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), tmp_path / "a.ipynb")
    assert main(["grade", str(tmp_path), "--timeout", value]) == 2
    assert "--timeout must be a finite number of seconds > 0" in capsys.readouterr().err


def _small_notebook() -> nbformat.NotebookNode:
    """Exercises 7.1 (wrong) and 7.2 (right) outside the book, the book's 3.1 not started, and
    three tampered ones: each would pass if the grader ran the notebook's check cells or
    trusted the notebook's ``labs``."""
    ratio = "def ratio_for_share(f, s):\n    return {}\n"
    cells = [new_code_cell("from emseg_tutorial import labs")]
    for number, body in (("7.1", "(1 - f) / f"), ("7.2", "s * (1 - f) / (f * (1 - s))")):
        cells += [new_markdown_cell(f"### Exercise {number}: a ratio"),
                  new_code_cell(ratio.format(body), metadata={"tags": ["exercise"]}),
                  new_code_cell("labs.check_ratio_for_share(ratio_for_share)")]
    tampered = [
        ("3.1", 'def jaccard_per_class(cm):\n    raise NotImplementedError("exercise: complete jaccard_per_class")',
         "labs.check_jaccard(jaccard_per_class)"),                               # not started, check untouched
        ("2.3", "import numpy as np\ndef my_distance_map(boundary, sigma):\n    return np.zeros(boundary.shape)",
         "from emseg_tutorial.weights import smoothed_distance_map\n"
         "labs.check_smoothed_distance(smoothed_distance_map)"),                 # checks the library's function
        ("1.1", "def class_shares(labels):\n    return {}",
         'if False:\n    labs.check_class_fractions(class_shares)\n'
         'print("✓ class shares: your shares match the library.")'),             # prints a verdict
        ("6.2", "def my_choice(epochs):\n    return 0\n"
                'labs.check_label_free_choice = lambda f: print("✓ label-free model selection: agrees.")',
         'labs.check_rarest_class("glia", __import__("numpy").array([[1, 2, 3]]))'),  # rebinds labs, other check
    ]
    for number, exercise, check in tampered:
        cells += [new_markdown_cell(f"### Exercise {number}: tampered"),
                  new_code_cell(exercise, metadata={"tags": ["exercise"]}), new_code_cell(check)]
    return new_notebook(cells=cells)


@pytest.fixture(scope="module")
def small_grades(tmp_path_factory):
    """One real kernel run of :func:`_small_notebook` through the command line."""
    tmp = tmp_path_factory.mktemp("grade")
    folder = tmp / "alice"
    folder.mkdir()
    nbformat.write(_small_notebook(), folder / "01_small.ipynb")
    done = subprocess.run([sys.executable, "-m", "emseg_tutorial.labs", "grade", str(folder), "--timeout", "120",
                           "--json", str(tmp / "alice.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads((tmp / "alice.json").read_text()), folder


def test_grading_a_small_notebook_in_a_kernel(small_grades):
    """A wrong answer fails, a right one passes, an untouched stub is not done."""
    table, record, folder = small_grades
    assert "total: 1 / 6 passed (4 failed, 1 not done)" in table, table
    assert [e["status"] for e in record["exercises"][:3]] == ["failed", "passed", "not done"]
    assert record["preset"] == "ci" and record["total"] == 6 and record["score"] == pytest.approx(1 / 6)
    assert record["notebooks"]["01_small.ipynb"]["error"] is None
    assert not (folder / "runs").exists() and sorted(p.name for p in folder.iterdir()) == ["01_small.ipynb"]


def test_a_tampered_check_cell_cannot_change_the_grade(small_grades):
    """Issue 25: a check cell edited to check the library's function passed a function returning
    zeros. The grader runs the book's check of each exercise on the student's own names."""
    _, record, _ = small_grades
    rows = {e["exercise"]: e for e in record["exercises"]}
    assert {n: (rows[n]["check"], rows[n]["status"]) for n in ("2.3", "1.1", "6.2")} == {
        "2.3": ("check_smoothed_distance", "failed"), "1.1": ("check_class_fractions", "failed"),
        "6.2": ("check_label_free_choice", "failed")}, rows
    assert "values differ" in rows["2.3"]["message"]
    assert "expected a dict" not in rows["1.1"]["message"] and "keys should be" in rows["1.1"]["message"]
    assert "case 'lowest entropy among healthy epochs'" in rows["6.2"]["message"]


def test_the_grader_table_is_the_books_check_cells():
    """labs.exercises.EXERCISES: the number, check and arguments of every exercise of the book."""
    from emseg_tutorial.labs.exercises import EXERCISES
    from emseg_tutorial.labs.grade import numbered_exercises

    found = {}
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        for ex, number in numbered_exercises(nb):
            call = re.search(rf"labs\.{ex.check}\((.*)\)\s*$", nb.cells[ex.check_cell].source, re.DOTALL)
            found[number] = (ex.check, call.group(1).strip())
    assert found == EXERCISES


def test_the_grader_starts_with_the_test_extras():
    """Everything ``grade`` imports comes with ``pip install '.[test]'``."""
    import importlib

    for module in ("nbclient", "nbclient.exceptions", "nbformat", "ipykernel", "jupyter_client"):
        importlib.import_module(module)
    from nbclient import NotebookClient  # noqa: F401 - the names grade.execute imports
    from nbclient.exceptions import CellTimeoutError, DeadKernelError  # noqa: F401


def test_a_notebook_without_its_check_cells_is_named_not_run(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["exercise"]})])  # its check was deleted
    nbformat.write(nb, tmp_path / "03_broken.ipynb")
    book = grade_folder(tmp_path)
    assert book.total == 0 and "not graded" in book.notebooks["03_broken.ipynb"]["error"]
    assert "03_broken.ipynb: not graded: solution cells [0] are not followed" in book.table()


def _expected_exercises(paths) -> int:
    return sum(len(find_exercises(nbformat.read(p, as_version=4))) for p in paths)


@pytest.fixture(scope="module")
def instructor_grades():
    return grade_folder(ROOT / "book", timeout=900)


@pytest.fixture(scope="module")
def student_grades():
    return grade_folder(STUDENT, timeout=900)


@pytest.mark.slow
def test_instructor_notebooks_score_full_marks(instructor_grades):
    book = instructor_grades
    assert book.total == _expected_exercises(CHAPTERS) > 0
    assert all(info["error"] is None for info in book.notebooks.values()), book.notebooks
    assert book.count("passed") == book.total, book.table()
    assert {g.notebook for g in book.grades} <= {p.name for p in CHAPTERS}


@pytest.mark.slow
def test_untouched_student_notebooks_score_zero(student_grades):
    book = student_grades
    assert book.total == _expected_exercises(sorted(STUDENT.glob("*.ipynb"))) == _expected_exercises(CHAPTERS)
    assert book.count("passed") == 0, book.table()
    assert book.count("not done") == book.total, book.table()  # stubs run through: nothing fails
    assert book.to_dict()["score"] == 0.0
