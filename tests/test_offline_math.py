"""Math renders with no network (issue 25, item 7): the book loads a MathJax it ships, not a CDN's.

``_config.yml`` names the ``sphinx-mathjax-offline`` extension (a dependency of the ``book`` extra
and of environment.yml), which copies MathJax 3 into ``_static/mathjax/``, and sets ``mathjax_path``
to that copy. A small Sphinx build with the same two settings shows the page's script is the local
file; a built book in ``_build/html`` (``make book``) is checked too where there is one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = "sphinx-mathjax-offline"
yaml = pytest.importorskip("yaml")


def _sphinx_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]


def _mathjax_scripts(html: str) -> list[str]:
    return [src for src in re.findall(r'<script[^>]*\ssrc="([^"]+)"', html) if "mathjax" in src.lower()]


def test_the_book_loads_its_own_mathjax():
    sphinx = _sphinx_config()
    path = sphinx["config"]["mathjax_path"]
    assert "://" not in path and not path.startswith("/"), f"mathjax_path {path!r} is not a file of the book"
    assert path.startswith("mathjax/"), "the extension copies MathJax into _static/mathjax/"
    assert EXTENSION in sphinx["extra_extensions"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    book = re.search(r"^book = \[(.*?)^\]", pyproject, flags=re.S | re.M).group(1)
    assert f'"{EXTENSION}' in book, "the book extra installs the extension"
    assert f"- {EXTENSION}" in (ROOT / "environment.yml").read_text(), "Binder installs it too"


def test_the_extension_ships_the_configured_script():
    module = pytest.importorskip(EXTENSION, reason=f"{EXTENSION} is not installed (pip install '.[book]')")
    static = Path(module.__file__).parent / "static"
    path = _sphinx_config()["config"]["mathjax_path"]
    assert (static / path).is_file(), f"{EXTENSION} has no {path}"
    assert (static / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir(), "fonts for the CHTML output"


def test_a_sphinx_build_references_the_local_copy(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip(EXTENSION, reason=f"{EXTENSION} is not installed (pip install '.[book]')")
    from sphinx.cmd.build import build_main

    sphinx = _sphinx_config()
    src, out = tmp_path / "src", tmp_path / "html"
    src.mkdir()
    (src / "conf.py").write_text(f"extensions = ['sphinx.ext.mathjax', {EXTENSION!r}]\n"
                                 f"mathjax_path = {sphinx['config']['mathjax_path']!r}\n")
    (src / "index.rst").write_text("Math\n====\n\nInline :math:`w = 1 + H`.\n\n.. math::\n\n   J = |A \\cap B| / |A \\cup B|\n")
    assert build_main(["-q", "-b", "html", str(src), str(out)]) == 0
    scripts = _mathjax_scripts((out / "index.html").read_text())
    assert scripts and all(s.split("?")[0] == "_static/mathjax/tex-chtml.js" for s in scripts), scripts
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_the_built_book_has_no_mathjax_from_the_network():
    html = ROOT / "_build" / "html"
    pages = sorted(html.glob("book/*.html")) if html.is_dir() else []
    with_math = [p for p in pages if _mathjax_scripts(p.read_text(errors="replace"))]
    if not with_math:
        pytest.skip("no rendered book with math in _build/html; run `make book` first")
    for page in with_math:
        for src in _mathjax_scripts(page.read_text(errors="replace")):
            assert "://" not in src, f"{page.name} loads MathJax from {src}"
            assert (page.parent / src.split("?")[0]).resolve().is_file(), f"{page.name}: {src} is missing"
