"""Tooling for the book's sources (not for readers): one setting for where the book lives.

``repository.url`` in ``_config.yml`` is that setting.

Jupyter Book builds the Binder and Colab launch buttons from that URL. The first cell of each
chapter installs the library from the same repository when it is missing (Colab), and the
introduction tells readers to clone it; :func:`sync_repository_url` copies the URL from
``_config.yml`` into both, so a fork changes one line and runs
``python -m emseg_tutorial.booktools repository``.

Examples
--------
>>> _url_from_config("repository:\\n  url: https://github.com/me/book  # fork\\n  branch: main\\n")
'https://github.com/me/book'
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

#: The install line of a chapter's first cell: ``git+<repository url>``.
INSTALL_URL = re.compile(r"git\+(https://[^\"'\s]+)")
#: The clone command of the introduction.
CLONE_URL = re.compile(r"git clone (https://\S+)")
CLONE_CD = re.compile(r"git clone (https://\S+) && cd \S+")


def _url_from_config(text: str) -> str:
    """``repository.url`` from the text of a Jupyter Book ``_config.yml`` (no YAML library needed)."""
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, flags=re.MULTILINE)
    url = re.search(r"^\s+url:\s*[\"']?([^\"'\s#]+)", block.group(1), flags=re.MULTILINE) if block else None
    if url is None:
        raise ValueError("_config.yml has no repository.url")
    return url.group(1)


def repository_url(root: str | Path = ".") -> str:
    """The book's repository URL, from ``root/_config.yml``."""
    return _url_from_config((Path(root) / "_config.yml").read_text())


def repository_mentions(root: str | Path = ".") -> dict[str, list[str]]:
    """Every repository URL the chapters' install lines and the introduction's clone line use."""
    root = Path(root)
    found: dict[str, list[str]] = {}
    for path in sorted((root / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        found[path.name] = [u for c in nb.cells if c.cell_type == "code" for u in INSTALL_URL.findall(c.source)]
    intro = root / "book" / "intro.md"
    if intro.exists():
        found[intro.name] = CLONE_URL.findall(intro.read_text())
    return found


def sync_repository_url(root: str | Path = ".") -> list[Path]:
    """Write ``repository.url`` of ``_config.yml`` into the install and clone lines.

    Returns
    -------
    list of Path
        The files that changed (none when everything already agrees).
    """
    root = Path(root)
    url = repository_url(root)
    changed = []
    for path in sorted((root / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        dirty = False
        for cell in nb.cells:
            new = INSTALL_URL.sub(f"git+{url}", cell.source) if cell.cell_type == "code" else cell.source
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
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m emseg_tutorial.booktools repository [--root DIR]``; exit 0, or 2 with one line."""
    parser = argparse.ArgumentParser(prog="python -m emseg_tutorial.booktools",
                                     description="Tooling for the book's sources.")
    sub = parser.add_subparsers(dest="command", required=True)
    repo = sub.add_parser("repository", help="copy repository.url of _config.yml into the chapters' "
                                             "install lines and the introduction's clone line")
    repo.add_argument("--root", type=Path, default=Path("."), help="the book's folder (default: .)")
    args = parser.parse_args(argv)
    try:
        changed = sync_repository_url(args.root)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"repository {repository_url(args.root)}: updated {len(changed)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
