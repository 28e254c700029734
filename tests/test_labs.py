"""Labs: every solution in the book passes its check, every student stub does not, and the
student notebooks hold no solution.

The exercise cells are run on their own, in a namespace with small stand-ins for what the
chapter computed before them (``CONTEXT``); no chapter is executed. A new exercise whose cells
read another chapter variable needs a stand-in here.
"""

from __future__ import annotations

import ast
import copy
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from emseg_tutorial import labs
from emseg_tutorial.labs.student import BEGIN, END, find_exercises, strip_solutions, student_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
WITH_EXERCISES = [p for p in NOTEBOOKS if find_exercises(nbformat.read(p, as_version=4))]


def _epoch(**changes):
    base = {"d_acc_real": 0.6, "d_acc_fake": 0.7, "target_boundary_fraction": 0.12,
            "source_boundary_fraction": 0.1, "target_entropy": 0.3, "source_val_boundary_jaccard": 0.8}
    return {**base, **changes}


@pytest.fixture(scope="module")
def context():
    """Small stand-ins for the chapter variables the exercise and check cells read."""
    from emseg_tutorial.data.synthetic import make_volume

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # torch's one-time optimizer import (~2 s)
    table = pd.DataFrame({"boundary_recall": {"m2_ratio2": 0.71, "m2_ratio10": 0.86},
                          "boundary_precision": {"m2_ratio2": 0.82, "m2_ratio10": 0.63}})
    history = {"epochs": [_epoch(d_acc_real=None, d_acc_fake=None), _epoch(d_acc_real=0.95, d_acc_fake=0.96)]}
    return {"np": np, "pd": pd, "torch": torch,
            "source": make_volume("fibsem", (2, 48, 48), seed=0),   # chapters 1 (and 4)
            "test": make_volume("fibsem", (2, 48, 48), seed=1),     # chapter 3
            "table": table,                                          # chapter 4
            "result": SimpleNamespace(history=history)}              # chapter 5


def run_cell(source: str, namespace: dict):
    """Execute a code cell; return the value of its last line when that is an expression."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), namespace)
    if last is not None:
        return eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
    return None


def run_exercises(nb, context) -> list[tuple[str, labs.CheckResult, float]]:
    namespace = dict(context)
    results = []
    for ex in find_exercises(nb):
        for i in ex.solution_cells:
            run_cell(nb.cells[i].source, namespace)
        start = time.perf_counter()
        result = run_cell(nb.cells[ex.check_cell].source, namespace)
        results.append((ex.check, result, time.perf_counter() - start))
    assert results, "no exercise found"
    return results


def test_every_chapter_has_exercises():
    chapters = {p.name for p in WITH_EXERCISES}
    for n in ("01", "02", "03", "04", "05"):
        assert any(name.startswith(n) for name in chapters), f"chapter {n} has no exercise"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_exercise_cells_are_hidden_and_checked_by_labs(path):
    nb = nbformat.read(path, as_version=4)
    for ex in find_exercises(nb):
        assert hasattr(labs, ex.check), f"{path.name}: labs has no {ex.check}"
        for i in ex.solution_cells:
            tags = nb.cells[i].metadata.get("tags", [])
            assert {"solution", "hide-input"} <= set(tags), f"{path.name} cell {i}: tags {tags}"
            assert nb.cells[i].source.count(BEGIN) == nb.cells[i].source.count(END) >= 1


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_solutions_pass_their_checks_quickly(path, context, capsys):
    nb = nbformat.read(path, as_version=4)
    for check, result, seconds in run_exercises(nb, context):
        assert isinstance(result, labs.CheckResult), f"{check} returned {result!r}"
        assert result.passed, f"{path.name} {check}: {result}"
        assert seconds < 1.0, f"{check} took {seconds:.2f} s"
    assert "✗" not in capsys.readouterr().out


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_student_stubs_are_reported_not_done(path, context, capsys):
    nb = student_notebook(nbformat.read(path, as_version=4))
    for check, result, _ in run_exercises(nb, context):
        assert not result, f"{path.name} {check}: a stub passed"
        assert result.status == "not done", f"{path.name} {check}: {result}"
    assert "not done yet" in capsys.readouterr().out


def test_make_labs_writes_student_notebooks_without_solutions(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    assert "-m emseg_tutorial.labs student book book/student" in makefile
    out = tmp_path / "student"
    done = subprocess.run([sys.executable, "-m", "emseg_tutorial.labs", "student", "book", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        instructor = nbformat.read(path, as_version=4)
        text = (out / path.name).read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        student = nbformat.read(out / path.name, as_version=4)
        nbformat.validate(student)
        for cell in student.cells:
            assert "solution" not in cell.metadata.get("tags", []) and "hide-input" not in cell.metadata.get("tags", [])
            assert not cell.get("outputs") and cell.get("execution_count") is None
        exercise_cells = "\n".join(student.cells[i].source for ex in find_exercises(student) for i in ex.solution_cells)
        for ex in find_exercises(instructor):  # no line of a solution survives
            for i in ex.solution_cells:
                body = instructor.cells[i].source.split(BEGIN)[1].split(END)[0]
                for line in filter(None, (ln.strip() for ln in body.splitlines())):
                    assert line not in exercise_cells, f"{path.name}: {line!r} leaked"


def test_committed_student_notebooks_are_up_to_date(tmp_path):
    """book/student/ is what `make labs` writes from the chapters, byte for byte."""
    committed = ROOT / "book" / "student"
    written = labs.write_student_versions(ROOT / "book", tmp_path)
    assert sorted(p.name for p in committed.glob("*.ipynb")) == [p.name for p in written], (
        "book/student/ does not hold one student notebook per chapter: run `make labs`")
    stale = [p.name for p in written if (committed / p.name).read_bytes() != p.read_bytes()]
    assert not stale, f"book/student/ is out of date for {stale}: run `make labs` and commit book/student/"


def test_strip_solutions_stubs():
    assert strip_solutions("x = 1\n") == "x = 1"
    top = strip_solutions(f"{BEGIN}\na, (b, c) = 1, (2, 3)\nd += 1\nprint(a)\n{END}\nshow(a)")
    assert top.splitlines() == ["# YOUR ANSWER HERE", "a = None", "b = None", "c = None", "d = None", "show(a)"]
    inner = strip_solutions(f"class K:\n    def f(self):\n        {BEGIN}\n        return 1\n        {END}\n")
    assert 'raise NotImplementedError("exercise: complete f")' in inner and "return 1" not in inner


@pytest.mark.parametrize("source, message", [
    (f"{BEGIN}\nx = 1\n", "without"), (f"x = 1\n{END}\n", "without"),
    (f"{BEGIN}\n{BEGIN}\n{END}\n", "inside another"), (f"{BEGIN}\nx = (\n{END}\n", "not valid Python")])
def test_strip_solutions_refuses_broken_markers(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(source)


def test_a_solution_without_check_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{BEGIN}\nx = 1\n{END}")])
    with pytest.raises(ValueError, match="not followed by a labs.check"):
        find_exercises(nb)


def test_cli_bad_source_exits_2(tmp_path, capsys):
    from emseg_tutorial.labs.__main__ import main

    assert main(["student", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["student", str(tmp_path), str(tmp_path / "out")]) == 2  # an empty folder


# -------------------------------------------------------------------------------------------
# wrong answers get a useful message, and no answer makes a check raise
# -------------------------------------------------------------------------------------------
def _shares_over_all_pixels(labels):
    names = {1: "boundary", 2: "cytoplasm", 3: "mitochondria", 4: "glia"}
    return {n: float((labels == c).mean()) for c, n in names.items()}


def _natural_log_entropy(labels, size):
    from emseg_tutorial.weights import label_entropy

    return label_entropy(labels, size, ignore_label=0) * math.log(2)


def _recall(cm):
    cm = np.asarray(cm, float)
    return np.diagonal(cm[:, :cm.shape[0]]) / cm.sum(axis=1)


def _step_without_detach(disc, optimizer, real, fake):
    from emseg_tutorial.losses import bce_fake, bce_real

    lr, lf = disc(real), disc(fake)
    loss = 0.5 * (bce_real(lr) + bce_fake(lf))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss_d": loss.item(), "acc_real": (lr > 0).float().mean().item(), "acc_fake": (lf < 0).float().mean().item()}


def _step_without_zero_grad(disc, optimizer, real, fake):
    from emseg_tutorial.losses import bce_fake, bce_real

    lr, lf = disc(real), disc(fake.detach())
    loss = 0.5 * (bce_real(lr) + bce_fake(lf))
    loss.backward()
    optimizer.step()
    return {"loss_d": loss.item(), "acc_real": (lr > 0).float().mean().item(), "acc_fake": (lf < 0).float().mean().item()}


def _generator_step_scoring_fake(disc, optimizer, fake):
    from emseg_tutorial.losses import bce_fake

    for p in disc.parameters():
        p.requires_grad_(False)
    loss = -bce_fake(disc(fake))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for p in disc.parameters():
        p.requires_grad_(True)
    return {"loss_g": loss.item()}


def _generator_step_with_disc_gradients(disc, optimizer, fake):
    from emseg_tutorial.losses import bce_real

    loss = bce_real(disc(fake))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss_g": loss.item()}


def _raises(*args):
    raise ValueError("shapes do not match")


WRONG = [
    (labs.check_class_fractions, (_shares_over_all_pixels,), "labelled"),
    (labs.check_rarest_class, ("boundary", np.array([[1, 1, 2, 2, 3]])), "fewest"),
    (labs.check_rarest_class, ("membrane", np.array([[1, 2, 3]])), "class names"),
    (labs.check_label_entropy, (lambda l, s: __import__("emseg_tutorial").weights.label_entropy(l, s),), "code 0"),
    (labs.check_label_entropy, (_natural_log_entropy,), "log base 2"),
    (labs.check_label_entropy, (lambda l, s: np.zeros((2, 2)),), "shape"),
    (labs.check_ratio_for_share, (lambda f, s: (1 - f) / f,), "Hint"),
    (labs.check_ratio_for_share, (lambda f, s: -1,), "ratio > 0"),
    (labs.check_jaccard, (_recall,), "recall"),
    (labs.check_constant_prediction, (0.75, np.array([[2, 2, 2, 1]])), "accuracy"),
    (labs.check_constant_prediction, ("a lot", np.array([[2, 2, 2, 1]])), "number"),
    (labs.check_ratio_weight_map, (lambda b, r: np.where(b == 1, r, 1.0) * (b > 0),), "rescale"),
    (labs.check_ratio_prediction, ({"recall": "down", "precision": "up"},), "Hint"),
    (labs.check_ratio_prediction, ({"recall": "more"},), "keys"),
    (labs.check_discriminator_step, (_step_without_detach,), "detach"),
    (labs.check_discriminator_step, (_step_without_zero_grad,), "zero_grad"),
    (labs.check_diagnosis, (lambda h: set(),), "Rule to revisit"),
    (labs.check_diagnosis, (lambda h: "entropy collapse",), "set of warning names"),
    (labs.check_jaccard, (_raises,), "raised ValueError: shapes do not match"),
    (labs.check_smoothed_distance, (lambda b, s: __import__("scipy.ndimage").ndimage.distance_transform_edt(b),),
     "smooth it"),
    (labs.check_smoothed_distance, (lambda b, s: __import__("scipy.ndimage").ndimage.distance_transform_edt(~b),),
     "non-wall pixel to the nearest wall"),
    (labs.check_generator_step, (_generator_step_scoring_fake,), "minimax"),
    (labs.check_generator_step, (_generator_step_with_disc_gradients,), "gradients reached the discriminator"),
    (labs.check_jaccard, (42,), "expected a function"),
]


@pytest.mark.parametrize("check, args, expected", WRONG, ids=lambda x: getattr(x, "__name__", None))
def test_wrong_answers_fail_with_a_hint(check, args, expected, capsys):
    result = check(*args)
    assert not result and result.status == "failed"
    assert expected in result.message
    assert str(result) in capsys.readouterr().out  # printed, not raised


CHECKS = [labs.check_class_fractions, labs.check_label_entropy, labs.check_ratio_for_share,
          labs.check_jaccard, labs.check_ratio_weight_map, labs.check_discriminator_step, labs.check_diagnosis,
          labs.check_smoothed_distance, labs.check_generator_step]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_missing_answers_are_not_done(check):
    assert check(None).status == "not done"

    def stub(*args):
        raise NotImplementedError("exercise")

    assert check(stub).status == "not done"


def test_check_result_prints_once_in_a_notebook(capsys):
    result = labs.check_ratio_for_share(lambda f, s: s * (1 - f) / (f * (1 - s)))
    assert capsys.readouterr().out.startswith("✓ ratio for a given share")
    result._ipython_display_()          # the cell's value right after the call: nothing more
    assert capsys.readouterr().out == ""
    result._ipython_display_()          # shown again later: the message again
    assert capsys.readouterr().out.startswith("✓")
    assert repr(result).startswith("CheckResult(name='ratio for a given share of the loss', status='passed'")


def test_checks_leave_the_random_state_alone():
    from emseg_tutorial.adapt.steps import discriminator_step

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    labs.check_discriminator_step(copy.copy(discriminator_step))
    assert torch.equal(torch.rand(3), expected)


# -------------------------------------------------------------------------------------------
# issue 25: every check judges a file of right and wrong answers correctly (tests/lab_variants.py)
# -------------------------------------------------------------------------------------------
from lab_variants import VARIANTS  # noqa: E402 - the data file beside this test


def _book_exercises() -> dict[str, tuple[str, list[str]]]:
    """check name -> (its check cell in the book, the lines of its solution)."""
    found = {}
    for path in WITH_EXERCISES:
        nb = nbformat.read(path, as_version=4)
        for ex in find_exercises(nb):
            body = [nb.cells[i].source.split(BEGIN)[1].split(END)[0] for i in ex.solution_cells]
            # a line that computes something (naming one call, e.g. optimizer.zero_grad(), is a fair hint)
            lines = [ln.strip() for b in body for ln in b.splitlines()
                     if len(ln.strip()) >= 12 and ("=" in ln or ln.strip().startswith("return"))]
            found[ex.check] = (nb.cells[ex.check_cell].source, lines)
    return found


EXERCISES = _book_exercises()
CASES = [(check, v) for check, variants in VARIANTS.items() for v in variants]


def test_the_variant_file_covers_every_exercise():
    assert set(VARIANTS) == set(EXERCISES)
    for check, variants in VARIANTS.items():
        assert sum(v.right for v in variants) >= 2 and sum(not v.right for v in variants) >= 3, check
        assert all(v.right or (v.misconception and v.hint) for v in variants), check
    assert sum(v.right for _, v in CASES) >= 28 and sum(not v.right for _, v in CASES) >= 40


@pytest.mark.parametrize("check, variant", CASES,
                         ids=[f"{c}-{'right' if v.right else 'wrong'}-{v.name}" for c, v in CASES])
def test_checks_judge_right_and_wrong_answers(check, variant, context, capsys):
    namespace = {**context, "labs": labs}
    run_cell(variant.code, namespace)
    cell, solution = EXERCISES[check]
    result = run_cell(cell, namespace)
    capsys.readouterr()
    if variant.right:
        assert result.passed, f"a right answer was rejected: {result}"
        return
    assert result.status == "failed", f"a wrong answer ({variant.misconception}) was judged {result}"
    assert variant.hint in result.message, f"the hint does not name {variant.misconception!r}: {result}"
    leaked = [line for line in solution if line in result.message]
    assert not leaked, f"the hint prints the solution: {leaked}"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_the_graders_own_checks_pass_the_solutions(path, context, capsys):
    """What the grader runs in place of each check cell (labs.grade.graded_run) passes the solutions."""
    from emseg_tutorial.labs.grade import CAPTURE_CELL, graded_run

    run = graded_run(nbformat.read(path, as_version=4))
    namespace = dict(context)
    run_cell(CAPTURE_CELL, namespace)
    for ex in find_exercises(nbformat.read(path, as_version=4)):
        for i in ex.solution_cells:
            run_cell(run.cells[i + 1].source, namespace)
        run_cell(run.cells[ex.check_cell + 1].source, namespace)
        out = capsys.readouterr().out
        assert out.startswith("✓"), f"{path.name} {ex.check}: {out}"


# -------------------------------------------------------------------------------------------
# issue 25: student notebooks read well in Jupyter and Colab (no raw MyST)
# -------------------------------------------------------------------------------------------
MYST_ROLE = re.compile(r"\{[a-z:]+\}`")
STUDENT_NOTEBOOKS = sorted((ROOT / "book" / "student").glob("*.ipynb"))


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda p: p.name)
def test_student_markdown_holds_no_myst_role(path):
    student = nbformat.read(path, as_version=4)
    raw = [(i, m.group(0)) for i, c in enumerate(student.cells) if c.cell_type == "markdown"
           for m in MYST_ROLE.finditer(c.source)]
    assert not raw, f"{path.name}: MyST roles left in Markdown cells: {raw[:5]}"
    assert not [i for i, c in enumerate(student.cells) if c.cell_type == "markdown"
                and re.search(r"^(```+|:::+)\{", c.source, re.MULTILINE)], f"{path.name}: a MyST directive is left"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_glued_number_is_printed_in_the_student_version(path):
    """Each {glue:text} placeholder of a chapter is shown as [key] and printed by a show_glued cell."""
    chapter = nbformat.read(path, as_version=4)
    student = nbformat.read(ROOT / "book" / "student" / path.name, as_version=4)
    placeholders = [m.group(1) for c in chapter.cells if c.cell_type == "markdown"
                    for m in re.finditer(r"\{glue(?::text)?\}`([^`]*)`", c.source)]
    printed = [p for c in student.cells if c.cell_type == "code" and "show_glued(" in c.source
               for p in ast.literal_eval("[" + c.source.split("show_glued(", 1)[1].rsplit(")", 1)[0] + "]")]
    assert printed == placeholders
    first_code = next(i for i, c in enumerate(student.cells) if c.cell_type == "code")
    assert "show_glued" not in student.cells[first_code].source  # the setup cell stays first


def test_plain_markdown_turns_roles_into_text():
    from emseg_tutorial.labs.student import plain_markdown, read_references

    refs = read_references(ROOT / "book" / "references.bib")
    assert refs["roy2020"] == "Roy and Chakraborty 2020" and refs["nunez2013"] == "Nunez-Iglesias et al. 2013"
    text, glued = plain_markdown(
        "As {cite:t}`roy2020` and others {cite}`roy2020,nunez2013`, see {ref}`the table <scores>`, "
        "{numref}`fig-a`, {term}`weight map`, {doc}`intro`, {math}`x^2` and "
        "{glue:text}`../03_experiment1.ipynb::m1_j:.3f`, {glue}`n`.", refs)
    assert text == ("As Roy and Chakraborty (2020) and others (Roy and Chakraborty 2020; Nunez-Iglesias et al. 2013), "
                    "see the table, fig-a, weight map, intro, $x^2$ and `[m1_j]`, `[n]`.")
    assert glued == ["../03_experiment1.ipynb::m1_j:.3f", "n"]
    quoted, _ = plain_markdown(":::{admonition} Scores\n:class: note\n\n* Jaccard\n:::\nafter")
    assert quoted == "> **Scores**\n>\n>\n> * Jaccard\nafter"


def test_a_number_computed_further_down_is_printed_after_the_cell_that_computes_it():
    """Chapter 2's opening text shows numbers its tenth cell computes: printed after the setup cell,
    they read "not computed yet" (issue 25), so they move after the cell that glues them."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from emseg_tutorial.labs.student import GLUE_CELL, GLUE_CELL_LATER

    nb = new_notebook(cells=[
        new_markdown_cell("Walls: {glue:text}`share:.0%`, {glue:text}`walls_x:.1f`, {glue:text}`../a.ipynb::k:.3f`."),
        new_code_cell("setup()"),
        new_code_cell('glue("share", 0.1)'),
        new_code_cell('for name in "xy":\n    glue(f"walls_{name}", 1.0)')])
    cells = student_notebook(nb).cells
    printing = [(i, c.source.splitlines()[0], c.source.splitlines()[-1]) for i, c in enumerate(cells)
                if "show_glued(" in c.source]
    assert printing == [(2, GLUE_CELL, "show_glued('walls_x:.1f', '../a.ipynb::k:.3f')"),  # f-string key: not moved
                        (4, GLUE_CELL_LATER, "show_glued('share:.0%')")]
    assert cells[4].id == f"{cells[3].id}-later"
