"""Time the synthetic twins (:mod:`emseg_tutorial.data.synthetic`) against the old generator.

Usage::

    python benchmarks/bench_twins.py [--fibsem Z Y X] [--snemi Z Y X] [--repeats N]
                                     [--reference REV] [--quick]

In one process, for each domain and shape:

* the current ``make_volume`` (``TWIN_VERSION`` 2),
* the generator of version 1, read from git history (``git show REV:emseg_tutorial/data/
  synthetic.py``, default the commit before the fast renderer) into a temporary module of the
  package, so both run on the same machine, libraries and load,
* the floor: drawing float32 Gaussian noise and blurring it (``scipy.ndimage.gaussian_filter``,
  sigma 1) slice by slice at the same shape,

are timed (best of ``--repeats``, ``time.perf_counter``; the three are interleaved so a change
of load hits them alike), and the script prints seconds, seconds per slice, old / new and
new / floor, and the class fractions of both versions (a sanity check: the volumes differ pixel
by pixel, their statistics should not). Run it on a quiet machine with one thread
(``OMP_NUM_THREADS=1``); the load average is printed before and after. ``--quick`` uses tiny
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


def load_old(rev: str):
    """The module ``emseg_tutorial/data/synthetic.py`` at ``rev``, imported beside the current one."""
    code = subprocess.run(["git", "show", f"{rev}:emseg_tutorial/data/synthetic.py"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / "_old_synthetic.py"
    tmp.write_text(code)
    name = "emseg_tutorial.data._old_synthetic"  # inside the package: its relative imports work
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
    ap.add_argument("--quick", action="store_true", help="tiny shapes, one repeat: check the script")
    args = ap.parse_args(argv)
    shapes = {"fibsem": tuple(args.fibsem), "snemi": tuple(args.snemi)}
    if args.quick:
        shapes, args.repeats = {"fibsem": (4, 64, 64), "snemi": (2, 96, 96)}, 1
    old = load_old(args.reference)
    print(f"twins benchmark: TWIN_VERSION {new.TWIN_VERSION} against {args.reference} (version 1); "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"load average {os.getloadavg()[0]:.2f}")
    for m in (old, new):  # warm up imports and caches
        m.make_volume("snemi", (2, 48, 48), seed=args.seed)
    rows = []
    for domain, shape in shapes.items():
        t_old = t_new = t_floor = np.inf
        v_old = v_new = None
        for _ in range(args.repeats):
            t, v_old = best_of(lambda: old.make_volume(domain, shape, seed=args.seed), 1)
            t_old = min(t_old, t)
            t, v_new = best_of(lambda: new.make_volume(domain, shape, seed=args.seed), 1)
            t_new = min(t_new, t)
            t, _ = best_of(lambda: floor(shape, args.seed), 1)
            t_floor = min(t_floor, t)
        rows.append((domain, shape, t_old, t_new, t_floor))
        for name, v in (("old", v_old), ("new", v_new)):
            frac = class_fractions(v.labels)
            print(f"  {domain} {name}: " + ", ".join(f"{k} {100 * x:.1f} %" for k, x in frac.items())
                  + f"; image mean {v.image.mean():.1f}, std {v.image.std():.1f}")
    print()
    print(f"{'domain':7s} {'shape':>16s} {'old s':>8s} {'new s':>8s} {'floor s':>8s} "
          f"{'old/slice':>10s} {'new/slice':>10s} {'old/new':>8s} {'new/floor':>9s}")
    for domain, shape, t_old, t_new, t_floor in rows:
        print(f"{domain:7s} {'x'.join(map(str, shape)):>16s} {t_old:8.2f} {t_new:8.2f} {t_floor:8.3f} "
              f"{t_old / shape[0]:10.4f} {t_new / shape[0]:10.4f} {t_old / t_new:8.1f} {t_new / t_floor:9.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
