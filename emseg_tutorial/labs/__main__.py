"""``python -m emseg_tutorial.labs``: write student notebooks, or list a book's exercises.

Examples (shell)::

    python -m emseg_tutorial.labs student book/ labs_student/
    python -m emseg_tutorial.labs list book/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from .student import find_exercises, write_student_versions


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad arguments or input)."""
    parser = argparse.ArgumentParser(prog="python -m emseg_tutorial.labs",
                                     description="Student versions of the book's exercises.")
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write every notebook of SOURCE with its solutions "
                                             "replaced by stubs to OUT")
    student.add_argument("source", type=Path, help="folder of instructor notebooks (or one notebook)")
    student.add_argument("out", type=Path, help="folder for the student notebooks")
    listing = sub.add_parser("list", help="list the exercises and their checks")
    listing.add_argument("source", type=Path, help="folder of notebooks (or one notebook)")
    args = parser.parse_args(argv)

    if not args.source.exists():
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    try:
        if args.command == "student":
            written = write_student_versions(args.source, args.out)
            print(f"wrote {len(written)} student notebooks to {args.out}")
        else:
            paths = [args.source] if args.source.suffix == ".ipynb" else sorted(args.source.glob("*.ipynb"))
            for path in paths:
                for ex in find_exercises(nbformat.read(path, as_version=4)):
                    print(f"{path.name}\tcell {ex.check_cell}\t{ex.check}")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
