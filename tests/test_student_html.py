"""Student notebooks as a student sees them: rendered to HTML by nbconvert (what Jupyter and
Colab show, without the book's MyST), with no raw MyST role, glue placeholder or directive left.

Issue 25: the student notebooks showed 42 ``{glue:text}`` placeholders and ``{term}`` /
``{cite}`` roles as literal text. Every committed student notebook is rendered without running
it; one cheap chapter (chapter 2, seconds at the ``ci`` preset) is also executed in a kernel
(``slow``: ``make test`` runs it) and must show each number of its text, printed from the run by
:func:`emseg_tutorial.glue.show_glued`. Two small tests feed the checks a corrupted copy and a
run that printed nothing, so a check that cannot fail would show here.
"""

from __future__ import annotations

import ast
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

nbconvert = pytest.importorskip("nbconvert", reason="nbconvert is missing: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]
STUDENT = sorted((ROOT / "book" / "student").glob("*.ipynb"))
#: The student notebook executed here: chapter 2 prints the most glued numbers (22) and trains nothing.
EXECUTED = ROOT / "book" / "student" / "02_weight_maps.ipynb"

#: A MyST role by name, anywhere in the rendered text (``{term}M1`` once the backticks became <code>).
NAMED_ROLE = re.compile(r"(?<![\w\\^_$])\{(?:glue(?::[a-z]+)?|term|cite(?::[a-z]+)?|numref|ref|doc|eq|math"
                        r"|download|abbr|index|sub|sup)\}")
#: Any ``{name}`` right before inline code: how nbconvert renders an unknown role ``{name}`body```.
ROLE_BEFORE_CODE = re.compile(r"(?<![\w\\^_$])\{[a-z][\w:\-]*\}<code>")
#: A fenced directive: ```{name} becomes <code class="language-{name}">, :::{name} stays text.
FENCE_CLASS = re.compile(r'class="language-(\{[^"]*)"')
FENCE_TEXT = re.compile(r"^\s*(?:```+|:::+)\{[a-z][\w:\-]*\}.*$", re.MULTILINE)
#: A MyST target line, ``(label)=``.
TARGET = re.compile(r"^\s*\([\w\-.:]+\)=\s*$", re.MULTILINE)


class _Text(HTMLParser):
    """The visible text of an HTML page (no <script>, no <style>)."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def render(nb: nbformat.NotebookNode, *, inputs: bool = False, markdown: bool = True) -> tuple[str, str]:
    """``nb`` as nbconvert's HTML (code inputs left out unless ``inputs``, Markdown cells unless
    ``markdown``) and that page's visible text."""
    exporter = nbconvert.HTMLExporter(exclude_input=not inputs, exclude_markdown=not markdown)
    html, _ = exporter.from_notebook_node(nb)
    parser = _Text()
    parser.feed(html)
    return html, "".join(parser.parts)


def raw_myst(html: str, text: str) -> list[str]:
    """What of the rendered page is raw MyST: ``"<kind>: <the text around it>"`` per finding."""
    def around(source: str, match: re.Match) -> str:
        return " ".join(source[max(0, match.start() - 40):match.end() + 40].split())

    found = [f"role {m.group(0)}: ...{around(text, m)}..." for m in NAMED_ROLE.finditer(text)]
    found += [f"role before code {m.group(0)}: ...{around(html, m)}..." for m in ROLE_BEFORE_CODE.finditer(html)
              if not NAMED_ROLE.match(m.group(0))]
    found += [f"directive fence {m.group(1)}" for m in FENCE_CLASS.finditer(html)]
    found += [f"directive fence {m.group(0).strip()}" for m in FENCE_TEXT.finditer(text)]
    found += [f"MyST target {m.group(0).strip()}" for m in TARGET.finditer(text)]
    return found


def placeholders(nb: nbformat.NotebookNode) -> list[str]:
    """Every ``key:format`` the notebook's ``show_glued(...)`` cells print."""
    return [p for c in nb.cells if c.cell_type == "code" and "show_glued(" in c.source
            for p in ast.literal_eval("[" + c.source.split("show_glued(", 1)[1].rsplit(")", 1)[0] + "]")]


def unprinted_numbers(nb: nbformat.NotebookNode) -> list[str]:
    """The glued numbers of executed ``nb`` whose ``[key] value`` line is missing from its rendered
    outputs (looked for in order, one line each) or says the run had not computed it."""
    _, text = render(nb, markdown=False)
    missing, start = [], 0
    for placeholder in placeholders(nb):
        if "::" in placeholder:
            continue  # a number of another chapter: show_glued names that chapter
        key = placeholder.partition(":")[0]
        line = re.compile(rf"^\[{re.escape(key)}\] (.*)$", re.MULTILINE).search(text, start)
        if line is None:
            missing.append(f"[{key}] (not printed)")
            continue
        start = line.end()
        if not line.group(1).strip() or line.group(1).startswith("not computed yet"):
            missing.append(f"[{key}] {line.group(1)}")
    return missing


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_notebook_renders_without_raw_myst(path):
    found = raw_myst(*render(nbformat.read(path, as_version=4)))
    assert not found, f"{path.name} shows raw MyST in nbconvert's HTML:\n  " + "\n  ".join(found)


def test_a_corrupted_copy_is_caught(tmp_path):
    """The check fails on a student notebook given back the book's MyST (a copy in tmp_path)."""
    nb = nbformat.read(STUDENT[0], as_version=4)
    nb.cells.insert(1, new_markdown_cell(
        "Walls are {glue:text}`boundary_fraction:.0%` of the pixels; see {term}`M1` and {cite:p}`roy2020`,\n"
        "{numref}`fig-a`, {ref}`scores`, {doc}`intro`, {eq}`entropy`, {math}`x^2`, {glue}`n`, {foo}`bar`.\n\n"
        "(scores)=\n## Scores\n\n```{glue:figure} weights_fig\n:name: fig-a\n```\n\n:::{tip}\nRun it twice.\n:::\n"))
    copy = tmp_path / STUDENT[0].name
    nbformat.write(nb, copy)
    found = raw_myst(*render(nbformat.read(copy, as_version=4)))
    for kind in ("role {glue:text}:", "role {term}:", "role {cite:p}:", "role {numref}:", "role {ref}:",
                 "role {doc}:", "role {eq}:", "role {math}:", "role {glue}:", "role before code {foo}<code>:",
                 "directive fence {glue:figure}", "directive fence :::{tip}", "MyST target (scores)="):
        assert any(f.startswith(kind) for f in found), f"{kind!r} not among {found}"
    # the instructor chapter, whose Markdown is the book's MyST, is caught too
    assert any(f.startswith("role {glue:text}") for f in raw_myst(*render(nbformat.read(
        ROOT / "book" / EXECUTED.name, as_version=4))))


def test_a_run_that_printed_no_number_is_caught():
    nb = new_notebook(cells=[
        new_markdown_cell("Walls are `[share]` of `[count]` pixels."),
        new_code_cell("show_glued('share:.0%', 'count:d', '../03_experiment1.ipynb::m1_j:.3f')",
                      outputs=[new_output("stream", name="stdout", text=(
                          "[share] not computed yet in this run (it may come from a cell further down)\n"
                          "[m1_j] a number of 03_experiment1.ipynb, printed there\n"))])])
    assert unprinted_numbers(nb) == [
        "[share] not computed yet in this run (it may come from a cell further down)", "[count] (not printed)"]


@pytest.mark.slow
# myst-nb's glue, when installed in the kernel, leaves an invisible record output nbconvert cannot show
@pytest.mark.filterwarnings("ignore:Your element with mimetype.*papermill.record:UserWarning")
def test_an_executed_student_notebook_shows_its_numbers(tmp_path):
    """Chapter 2's student version, run at the ``ci`` preset with a fresh EMSEG_RUNS (about 10 s on
    2 cores; one cell may take 60 s), prints every number its text shows as ``[key]`` and no raw MyST."""
    from emseg_tutorial.labs.grade import execute
    from emseg_tutorial.session import child_environment

    nb = nbformat.read(EXECUTED, as_version=4)
    env = child_environment(preset="ci", progress=0, widgets="static", runs=tmp_path / "runs")
    env.update(MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    stopped = execute(nb, tmp_path, env, timeout=60)
    assert stopped is None, f"{EXECUTED.name}: {stopped}"
    errors = [f"cell {i}: {o.ename}: {o.evalue}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{EXECUTED.name}, run untouched, shows tracebacks: {errors}"
    assert not (found := raw_myst(*render(nb))), f"{EXECUTED.name} run shows raw MyST:\n  " + "\n  ".join(found)
    assert len(placeholders(nb)) >= 20
    assert not (missing := unprinted_numbers(nb)), f"{EXECUTED.name}: numbers its text shows, not printed: {missing}"
    assert re.search(r"^\[preset\] ci$", render(nb, markdown=False)[1], re.MULTILINE)
