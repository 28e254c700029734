"""Measure how long every chapter runs at one preset and record it in ``emseg_tutorial/_data/timings.json``.

Usage::

    python benchmarks/chapter_times.py --preset cpu [--chapters 01_data 03_experiment1]
                                      [--alone] [--machine "2-core laptop"] [--out emseg_tutorial/_data/timings.json]
    python benchmarks/chapter_times.py --preset cpu --from-log build.log   # times of a `make book`

Each chapter notebook is executed with nbclient (kernel ``python3``, working folder ``book/``,
``EMSEG_PRESET`` set to the preset, progress bars off) and its wall-clock time recorded. By
default the chapters run in book order and share one fresh runs folder, as ``make book`` runs
them (a chapter reuses the stages an earlier one trained); with ``--alone`` every chapter gets
its own fresh runs folder and retrains what it needs, the time a student sees when opening
one chapter on its own. The record for the preset (machine, UTC date, mode, seconds per
chapter) replaces the previous one in the file (with ``--chapters``, only those chapters' times
change when the machine and mode are the same); the chapters' opening tables and the
instructor guide read it (:mod:`emseg_tutorial.timings`). A chapter that fails stops the
script with exit status 1 and nothing is written.

``--from-log LOG`` runs nothing: it reads the times myst-nb logged while ``make book`` executed
the chapters (``<chapter>.ipynb: Executed notebook in S seconds``, saved with
``make book 2>&1 | tee LOG``), so one book build gives both the book and its timing record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emseg_tutorial.presets import PRESETS  # noqa: E402
from emseg_tutorial.session import child_environment  # noqa: E402
from emseg_tutorial.timings import TIMINGS_FILE, record_timings  # noqa: E402


def default_machine() -> str:
    """A short description of this machine: CPU count and the GPU, when torch sees one."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, {gpu}"


def run_chapter(path: Path, env: dict[str, str], timeout: int) -> float:
    """Execute one notebook in ``book/`` in a kernel with environment ``env``; return its
    wall-clock seconds."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    return time.perf_counter() - start


EXECUTED = re.compile(r"(\d\d_\w+)\.ipynb: Executed notebook in ([0-9.]+) seconds")


def times_from_log(text: str) -> dict[str, float]:
    """Seconds per chapter from a Jupyter Book build log (myst-nb's "Executed notebook" lines).

    >>> times_from_log("/x/book/03_experiment1.ipynb: Executed notebook in 12.50 seconds [mystnb]")
    {'03_experiment1': 12.5}
    """
    return {name: float(sec) for name, sec in EXECUTED.findall(text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--chapters", nargs="*", help="notebook names without .ipynb (default: all)")
    parser.add_argument("--alone", action="store_true", help="a fresh runs folder for every chapter")
    parser.add_argument("--machine", default=None, help="how the table names this machine")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=ROOT / TIMINGS_FILE)
    parser.add_argument("--from-log", type=Path, metavar="LOG", help="read the times of a `make book` log")
    args = parser.parse_args(argv)
    machine = args.machine or default_machine()
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.from_log:
        seconds = times_from_log(args.from_log.read_text(errors="replace"))
        if not seconds:
            parser.error(f"{args.from_log}: no 'Executed notebook in' lines (was the book executed?)")
        record_timings(args.out, args.preset, seconds, machine=machine, date=date, mode="book")
        print(f"wrote the {args.preset} record ({len(seconds)} chapters, {sum(seconds.values()):.0f} s) to {args.out}")
        return 0

    paths = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        paths = [p for p in paths if p.stem in set(args.chapters)]
    if not paths:
        parser.error("no chapter matched")
    seconds = {}
    with tempfile.TemporaryDirectory() as shared:
        for path in paths:
            runs = tempfile.mkdtemp(dir=shared) if args.alone else shared
            env = child_environment(preset=args.preset, runs=runs, progress=0)
            try:
                seconds[path.stem] = run_chapter(path, env, args.timeout)
            except Exception as error:  # noqa: BLE001 - report and stop, write nothing
                print(f"{path.name}: failed ({type(error).__name__}: {str(error)[:300]})", file=sys.stderr)
                return 1
            print(f"{path.stem}: {seconds[path.stem]:.1f} s", flush=True)
    record_timings(args.out, args.preset, seconds, machine=machine, date=date,
                   mode="alone" if args.alone else "book", merge=bool(args.chapters))
    print(f"wrote the {args.preset} record to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
