"""Tooling for the book's sources (not for readers): where the book lives and which release it installs.

Two settings, each in one place, both in ``_config.yml``: ``repository.url`` (where the book
lives) and ``repository.branch`` (:func:`install_ref`: the branch or tag the launch buttons
open, and the git ref the chapters install). A release is the git tag ``v<version>``
(:func:`release_tag`, from ``emseg_tutorial.__version__``, which pyproject.toml reads); the
book points at it only once the tag exists (README, "Releases"), and
``tests/test_environment.py`` checks in the repository that the ref it installs exists.

Jupyter Book builds the Binder and Colab launch buttons from the repository URL and branch.
The first cell of each chapter installs the library from the same repository at the same ref,
when it is missing (Colab), and the introduction tells readers to clone it;
:func:`sync_repository_url` copies URL and ref into both and regenerates the student notebooks
(``book/student/``), so a fork (or a release) changes one line and runs
``python -m emseg_tutorial.booktools repository``.

This module is also a Sphinx extension (``sphinx.extra_extensions`` in ``_config.yml``): it
points the launch buttons of each chapter at its student version, ``book/student/<name>.ipynb``
(:func:`student_launch_url`), so Binder and Colab open the notebook without solutions while the
rendered book stays the instructor version.

Examples
--------
>>> _url_from_config("repository:\\n  url: https://github.com/me/book  # fork\\n  branch: main\\n")
'https://github.com/me/book'
>>> _repository_setting("repository:\\n  url: https://github.com/me/book\\n  branch: v0.3.1\\n", "branch")
'v0.3.1'
>>> release_tag("0.3.1")
'v0.3.1'
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import nbformat

from . import __version__

#: The install line of a chapter's first cell: ``git+<repository url>@<install ref>``.
INSTALL = re.compile(r"git\+(?P<url>https://[^\"'\s@]+)(?:@(?P<ref>[^\"'\s]+))?")
#: The clone command of the introduction.
CLONE_URL = re.compile(r"git clone (https://\S+)")
CLONE_CD = re.compile(r"git clone (https://\S+) && cd \S+")
#: Folder of the student notebooks, next to the chapters (``book/student/``).
STUDENT_DIR = "student"


def release_tag(version: str = __version__) -> str:
    """The git tag of a release: ``v`` and the package version (``emseg_tutorial.__version__``)."""
    return f"v{version}"


def _repository_setting(text: str, key: str) -> str:
    """``repository.<key>`` from the text of a Jupyter Book ``_config.yml`` (no YAML library needed)."""
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, flags=re.MULTILINE)
    value = re.search(rf"^\s+{key}:\s*[\"']?([^\"'\s#]+)", block.group(1), flags=re.MULTILINE) if block else None
    if value is None:
        raise ValueError(f"_config.yml has no repository.{key}")
    return value.group(1)


def _url_from_config(text: str) -> str:
    """``repository.url`` from the text of a Jupyter Book ``_config.yml``."""
    return _repository_setting(text, "url")


def repository_url(root: str | Path = ".") -> str:
    """The book's repository URL, from ``root/_config.yml``."""
    return _url_from_config((Path(root) / "_config.yml").read_text())


def install_ref(root: str | Path = ".") -> str:
    """The git ref (branch or tag) the chapters install and the launch buttons open:
    ``repository.branch`` of ``root/_config.yml``. It must exist in the repository: a release
    tag is pushed before the book points at it."""
    return _repository_setting((Path(root) / "_config.yml").read_text(), "branch")


def _chapters(root: Path, students: bool = False) -> list[Path]:
    book = root / "book"
    return sorted(book.glob("*.ipynb")) + (sorted((book / STUDENT_DIR).glob("*.ipynb")) if students else [])


def _name(root: Path, path: Path) -> str:
    return path.relative_to(root / "book").as_posix()


def repository_mentions(root: str | Path = ".") -> dict[str, list[str]]:
    """Every repository URL the chapters' install lines (student versions included) and the
    introduction's clone line use, by file (``01_data.ipynb``, ``student/01_data.ipynb``, ``intro.md``)."""
    root = Path(root)
    found: dict[str, list[str]] = {}
    for path in _chapters(root, students=True):
        nb = nbformat.read(path, as_version=4)
        found[_name(root, path)] = [m["url"] for c in nb.cells if c.cell_type == "code"
                                    for m in INSTALL.finditer(c.source)]
    intro = root / "book" / "intro.md"
    if intro.exists():
        found[intro.name] = CLONE_URL.findall(intro.read_text())
    return found


def install_refs(root: str | Path = ".") -> dict[str, list[str | None]]:
    """The git reference (branch or tag) of every install line, by notebook (``None``: unpinned)."""
    root = Path(root)
    return {_name(root, path): [m["ref"] for c in nbformat.read(path, as_version=4).cells
                                if c.cell_type == "code" for m in INSTALL.finditer(c.source)]
            for path in _chapters(root, students=True)}


def sync_repository_url(root: str | Path = ".") -> list[Path]:
    """Write ``repository.url`` of ``_config.yml`` and :func:`install_ref` into the install and
    clone lines, then regenerate the student notebooks when ``book/student/`` exists.

    Returns
    -------
    list of Path
        The files that changed (none when everything already agrees).
    """
    root = Path(root)
    url = repository_url(root)
    pinned = f"git+{url}@{install_ref(root)}"
    changed = []
    for path in _chapters(root):
        nb = nbformat.read(path, as_version=4)
        dirty = False
        for cell in nb.cells:
            new = INSTALL.sub(pinned, cell.source) if cell.cell_type == "code" else cell.source
            dirty, cell.source = dirty or new != cell.source, new
        if dirty:
            nbformat.write(nb, path)
            changed.append(path)
    intro = root / "book" / "intro.md"
    if intro.exists():
        text = intro.read_text()
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        new = CLONE_CD.sub(f"git clone {url} && cd {name}", CLONE_URL.sub(f"git clone {url}", text))
        if new != text:
            intro.write_text(new)
            changed.append(intro)
    students = root / "book" / STUDENT_DIR
    if students.is_dir():
        from .labs.student import write_student_versions

        before = {p: p.read_bytes() for p in students.glob("*.ipynb")}
        written = write_student_versions(root / "book", students)
        changed += [p for p in written if before.get(p) != p.read_bytes()]
    return changed


# ---------------------------------------------------------------------------------------------
# Sphinx extension: launch buttons open the student notebooks
# ---------------------------------------------------------------------------------------------
def student_path(pagename: str) -> str:
    """Where the student version of page ``pagename`` lives, relative to the book's root.

    Examples
    --------
    >>> student_path("book/03_experiment1")
    'book/student/03_experiment1.ipynb'
    """
    page = PurePosixPath(pagename)
    return str(page.parent / STUDENT_DIR / f"{page.name}.ipynb")


def student_launch_url(url: str, pagename: str) -> str:
    """A launch URL built for ``<pagename>.ipynb`` (Binder, Colab), pointed at the student version.

    URLs that do not end with the page's notebook (another service) are returned unchanged.

    Examples
    --------
    >>> student_launch_url("https://colab.research.google.com/github/o/r/blob/main/book/01_data.ipynb",
    ...                    "book/01_data")
    'https://colab.research.google.com/github/o/r/blob/main/book/student/01_data.ipynb'
    >>> student_launch_url("https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/01_data.ipynb", "book/01_data")
    'https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/student/01_data.ipynb'
    """
    notebook = f"{pagename}.ipynb"
    if not url.endswith(notebook):
        return url
    return url[:-len(notebook)] + student_path(pagename)


def point_launch_buttons_at_students(app: Any, pagename: str, templatename: str, context: dict,
                                     doctree: Any) -> None:
    """``html-page-context`` handler: rewrite the page's launch buttons (built by
    sphinx-book-theme from the page's own path) to open ``book/student/<name>.ipynb``, when that
    notebook exists."""
    if not (Path(app.srcdir) / student_path(pagename)).is_file():
        return
    for group in context.get("header_buttons") or []:
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if "url" in button:
                button["url"] = student_launch_url(button["url"], pagename)


def setup(app: Any) -> dict:
    """Register the extension (after sphinx-book-theme's launch buttons, priority 501)."""
    app.connect("html-page-context", point_launch_buttons_at_students, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    """``python -m emseg_tutorial.booktools repository [--root DIR]``; exit 0, or 2 with one line."""
    parser = argparse.ArgumentParser(prog="python -m emseg_tutorial.booktools",
                                     description="Tooling for the book's sources.")
    sub = parser.add_subparsers(dest="command", required=True)
    repo = sub.add_parser("repository", help="copy repository.url and .branch of _config.yml into the "
                                             "chapters' install lines and the introduction's clone line, and "
                                             "regenerate book/student/")
    repo.add_argument("--root", type=Path, default=Path("."), help="the book's folder (default: .)")
    args = parser.parse_args(argv)
    try:
        changed = sync_repository_url(args.root)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"repository {repository_url(args.root)} at {install_ref(args.root)}: updated {len(changed)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
