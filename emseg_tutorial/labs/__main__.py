"""``python -m emseg_tutorial.labs``: write student notebooks, list a book's exercises, grade.

Examples (shell)::

    python -m emseg_tutorial.labs student book/ book/student/
    python -m emseg_tutorial.labs list book/
    python -m emseg_tutorial.labs grade submissions/alice/ --json alice.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import nbformat

from ..store import atomic_write
from .grade import grade_folder
from .student import find_exercises, write_student_versions


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad arguments or input)."""
    parser = argparse.ArgumentParser(prog="python -m emseg_tutorial.labs",
                                     description="Student versions of the book's exercises, and grading.")
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write every notebook of SOURCE with its solutions "
                                             "replaced by stubs to OUT")
    student.add_argument("source", type=Path, help="folder of instructor notebooks (or one notebook)")
    student.add_argument("out", type=Path, help="folder for the student notebooks")
    listing = sub.add_parser("list", help="list the exercises and their checks")
    listing.add_argument("source", type=Path, help="folder of notebooks (or one notebook)")
    grade = sub.add_parser("grade", help="execute every notebook of SOURCE at the ci preset and print one row "
                                         "per exercise (passed / failed / not done) and a total")
    grade.add_argument("source", type=Path, help="folder of student notebooks (or one notebook)")
    grade.add_argument("--json", nargs="?", const="-", metavar="FILE",
                       help="write the gradebook record as JSON to FILE (no FILE: print it instead of the table)")
    grade.add_argument("--timeout", type=float, default=600.0, metavar="S",
                       help="seconds one cell may run (default: 600)")
    args = parser.parse_args(argv)

    if not args.source.exists():
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    try:
        if args.command == "student":
            written = write_student_versions(args.source, args.out)
            print(f"wrote {len(written)} student notebooks to {args.out}")
        elif args.command == "grade":
            if not (math.isfinite(args.timeout) and args.timeout > 0):  # NaN and infinity too
                raise ValueError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
            if args.json not in (None, "-") and Path(args.json).resolve().parent == args.source.resolve():
                raise ValueError(f"--json {args.json} would be written among the notebooks being graded")
            book = grade_folder(args.source, timeout=args.timeout)
            record = json.dumps(book.to_dict(), indent=1, ensure_ascii=False)
            if args.json == "-":
                print(record)
            else:
                print(book.table())
                if args.json:
                    atomic_write(args.json, lambda tmp: Path(tmp).write_text(record + "\n"))
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
