"""Time the synthetic twins (:mod:`emseg_tutorial.data.synthetic`) against the old generator.

Usage::

    python benchmarks/bench_twins.py [--fibsem Z Y X] [--snemi Z Y X] [--repeats N]
                                     [--reference REV] [--v2 REV | --no-v2] [--quick]

In one process, for each domain and shape:

* the current ``make_volume`` (``TWIN_VERSION`` 3) in one thread (``workers=1``), and with
  ``--workers`` threads (default :func:`~emseg_tutorial.data.synthetic.default_workers`: the
  usable CPUs, at most 4; the same volume, rendered block runs side by side) when that is
  more than one,
* the generator of version 1, read from git history (``git show REV:emseg_tutorial/data/
  synthetic.py``, default the commit before the fast renderer) into a temporary module of the
  package, so all run on the same machine, libraries and load,
* the generator of version 2 the same way (``--v2``, default the last commit with it; skipped
  with ``--no-v2``),
* the floor: drawing float32 Gaussian noise and blurring it (``scipy.ndimage.gaussian_filter``,
  sigma 1) slice by slice at the same shape,

are timed (best of ``--repeats``, ``time.perf_counter``; all are interleaved so a change
of load hits them alike), and the script prints seconds, seconds per slice, old / new (one
thread against one thread), old / new with threads, new / floor (and v2 / new), and the class
fractions of every version (a sanity check: the
volumes differ pixel by pixel; version 3 also changes the physics on purpose, so the target's
boundary fraction and image statistics move: see the module docstring of the generator). Run it on a quiet machine with one thread
(``OMP_NUM_THREADS=1``: numpy and scipy stay single-threaded, so "v1/new" compares one core
with one core, and "v1/newN" shows what the threads add on this machine); the load average is
printed before and after. ``--quick`` uses tiny
shapes to check that the script works. Nothing is enforced: it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emseg_tutorial.data import synthetic as new  # noqa: E402
from emseg_tutorial.labels import class_fractions  # noqa: E402

#: The last commit with the version-1 generator.
REFERENCE = "f34760b"
#: The last commit with the version-2 generator.
REFERENCE_V2 = "1e9e24c"


def load_old(rev: str, tag: str = "old"):
    """The module ``emseg_tutorial/data/synthetic.py`` at ``rev``, imported beside the current one."""
    code = subprocess.run(["git", "show", f"{rev}:emseg_tutorial/data/synthetic.py"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / f"_{tag}_synthetic.py"
    tmp.write_text(code)
    name = f"emseg_tutorial.data._{tag}_synthetic"  # inside the package: its relative imports work
    spec = importlib.util.spec_from_file_location(name, tmp)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def floor(shape: tuple[int, int, int], seed: int = 0) -> None:
    """Gaussian noise blurred with sigma 1, slice by slice: the cheapest 'textured' volume."""
    rng = np.random.default_rng(seed)
    for _ in range(shape[0]):
        ndi.gaussian_filter(rng.standard_normal(shape[1:], dtype=np.float32), 1.0)


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fibsem", type=int, nargs=3, default=(16, 500, 500), metavar=("Z", "Y", "X"))
    ap.add_argument("--snemi", type=int, nargs=3, default=(8, 1024, 1024), metavar=("Z", "Y", "X"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", default=REFERENCE, help="git revision of the old generator")
    ap.add_argument("--v2", default=REFERENCE_V2, help="git revision of the version-2 generator")
    ap.add_argument("--no-v2", action="store_true", help="do not time version 2")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, one repeat: check the script")
    ap.add_argument("--workers", type=int, default=None,
                    help="threads of the threaded run (default: the usable CPUs, at most 4)")
    args = ap.parse_args(argv)
    shapes = {"fibsem": tuple(args.fibsem), "snemi": tuple(args.snemi)}
    if args.quick:
        shapes, args.repeats = {"fibsem": (4, 64, 64), "snemi": (2, 96, 96)}, 1
    old = load_old(args.reference)
    v2 = None if args.no_v2 else load_old(args.v2, "v2")
    print(f"twins benchmark: TWIN_VERSION {new.TWIN_VERSION} against {args.reference} (version 1)"
          + ("" if v2 is None else f" and {args.v2} (version 2)")
          + f"; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"load average {os.getloadavg()[0]:.2f}")
    workers = new.default_workers() if args.workers is None else args.workers
    gens = {"v1": old.make_volume, **({} if v2 is None else {"v2": v2.make_volume}),
            "new": lambda *a, **k: new.make_volume(*a, workers=1, **k)}
    if workers > 1:
        gens["newN"] = lambda *a, **k: new.make_volume(*a, workers=workers, **k)
    for make in gens.values():  # warm up imports and caches
        make("snemi", (2, 48, 48), seed=args.seed)
    rows = []
    for domain, shape in shapes.items():
        best = {k: np.inf for k in (*gens, "floor")}
        vols = {}
        for _ in range(args.repeats):  # interleaved: a change of load hits all alike
            for key, make in gens.items():
                t, vols[key] = best_of(lambda: make(domain, shape, seed=args.seed), 1)
                best[key] = min(best[key], t)
            t, _ = best_of(lambda: floor(shape, args.seed), 1)
            best["floor"] = min(best["floor"], t)
        rows.append((domain, shape, best))
        if "newN" in vols:  # threads must not change a single pixel
            a, b = vols["newN"], vols["new"]
            same = bool((a.image == b.image).all() and (a.labels == b.labels).all())
            print(f"  {domain} {workers} threads: {'identical to' if same else 'DIFFERENT from'} one thread")
            del vols["newN"]
        for key, v in vols.items():
            frac = class_fractions(v.labels)
            print(f"  {domain} {key:3s}: " + ", ".join(f"{k} {100 * x:.1f} %" for k, x in frac.items())
                  + f"; image mean {v.image.mean():.1f}, std {v.image.std():.1f}")
    print()
    has_v2, has_n = v2 is not None, "newN" in gens
    if has_n:
        print(f"newN: {workers} threads")
    print(f"{'domain':7s} {'shape':>16s} {'v1 s':>8s} " + (f"{'v2 s':>8s} " if has_v2 else "")
          + f"{'new s':>8s} " + (f"{'newN s':>8s} " if has_n else "") + f"{'floor s':>8s} {'new/slice':>10s} "
          + f"{'v1/new':>7s} " + (f"{'v1/newN':>8s} " if has_n else "")
          + (f"{'v2/new':>7s} " if has_v2 else "") + f"{'new/floor':>9s}")
    for domain, shape, b in rows:
        print(f"{domain:7s} {'x'.join(map(str, shape)):>16s} {b['v1']:8.2f} "
              + (f"{b['v2']:8.2f} " if has_v2 else "")
              + f"{b['new']:8.3f} " + (f"{b['newN']:8.3f} " if has_n else "")
              + f"{b['floor']:8.3f} {b['new'] / shape[0]:10.4f} {b['v1'] / b['new']:7.1f} "
              + (f"{b['v1'] / b['newN']:8.1f} " if has_n else "")
              + (f"{b['v2'] / b['new']:7.1f} " if has_v2 else "") + f"{b['new'] / b['floor']:9.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
