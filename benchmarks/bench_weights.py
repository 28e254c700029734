"""Time the weight maps of :mod:`emseg_tutorial.weights` against reference implementations.

Usage::

    python benchmarks/bench_weights.py [--shape Z Y X] [--repeats N] [--seed S]

A realistic 4-class label volume is drawn (Voronoi cells whose seeds drift slowly along z,
2-pixel walls, round mitochondria inside cells, a tenth of the cells glia). Then

* ``label_entropy`` is timed against ``skimage.filters.rank.entropy`` called slice by slice
  (same run, same volume; agreement is checked on every pixel and away from the border);
* ``distance_weight_map`` is timed against the plain reference it wraps: a 2D
  ``scipy.ndimage.distance_transform_edt`` per slice plus ``gaussian_filter``;
* the other maps are timed alone, and every map's boundary : non-boundary mean-weight ratio
  is printed (the numbers the book's weight-map table shows).

Times are the best of ``--repeats`` runs (``time.perf_counter``). Nothing is enforced: the
script prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.filters.rank import entropy as rank_entropy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emseg_tutorial import weights as W  # noqa: E402
from emseg_tutorial.labels import to_boundary_task  # noqa: E402


def make_labels(shape: tuple[int, int, int], seed: int = 0, cell_size: float = 35.0) -> np.ndarray:
    """4-class codes (1 boundary, 2 cytoplasm, 3 mitochondria, 4 glia), uint8 (Z, Y, X)."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    n_cells = max(2, int(ny * nx / cell_size**2))
    start = rng.uniform(0, (ny, nx), (n_cells, 2))
    drift = rng.normal(0, 0.4, (n_cells, 2))
    glia = np.concatenate([[False], rng.random(n_cells) < 0.1])
    n_mito = 2 * n_cells
    mito_start = rng.uniform(0, (ny, nx), (n_mito, 2))
    mito_drift = rng.normal(0, 0.3, (n_mito, 2))
    mito_radius = np.concatenate([[0.0], rng.uniform(3, 8, n_mito)])
    out = np.empty(shape, dtype=np.uint8)
    for z in range(nz):
        seeds = np.zeros((ny, nx), dtype=np.int32)
        pts = np.mod(start + z * drift, (ny, nx)).astype(int)
        seeds[pts[:, 0], pts[:, 1]] = np.arange(1, n_cells + 1)
        iy, ix = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
        cells = seeds[iy, ix]
        wall = np.zeros((ny, nx), dtype=bool)
        wall[:, 1:] |= cells[:, 1:] != cells[:, :-1]
        wall[:, :-1] |= cells[:, 1:] != cells[:, :-1]
        wall[1:] |= cells[1:] != cells[:-1]
        wall[:-1] |= cells[1:] != cells[:-1]
        centres = np.zeros((ny, nx), dtype=np.int32)
        mp = np.mod(mito_start + z * mito_drift, (ny, nx)).astype(int)
        centres[mp[:, 0], mp[:, 1]] = np.arange(1, n_mito + 1)
        dist, (my, mx) = ndi.distance_transform_edt(centres == 0, return_indices=True)
        mito = (dist < mito_radius[centres[my, mx]]) & (ndi.distance_transform_edt(~wall) > 2)
        plane = np.where(glia[cells], 4, 2).astype(np.uint8)
        plane[mito & ~glia[cells]] = 3
        plane[wall] = 1
        out[z] = plane
    return out


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 500, 500],
                        metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-border", action="store_true", help="do not time border_weight_map")
    args = parser.parse_args(argv)

    labels = make_labels(tuple(args.shape), args.seed)
    boundary = to_boundary_task(labels)
    fractions = np.bincount(labels.ravel(), minlength=5)[1:] / labels.size
    print(f"labels {tuple(labels.shape)} uint8, class fractions boundary/cyto/mito/glia = "
          + "/".join(f"{f:.3f}" for f in fractions) + f"; best of {args.repeats}")

    footprint = np.ones((5, 5), dtype=np.uint8)
    t_ours, ours = best_time(lambda: W.label_entropy(labels, 5), args.repeats)
    t_ref, ref = best_time(lambda: np.stack([rank_entropy(s, footprint) for s in labels]),
                           args.repeats)
    err_all = float(np.abs(ours - ref).max())
    err_in = float(np.abs(ours - ref)[:, 2:-2, 2:-2].max())

    sigma = 10.0

    def reference_distance():
        edt = np.stack([ndi.distance_transform_edt(s == 1) for s in labels]).astype(np.float32)
        return ndi.gaussian_filter(edt, sigma=(0, sigma, sigma))

    t_dist, dist = best_time(lambda: W.distance_weight_map(boundary, sigma), args.repeats)
    t_dref, _ = best_time(reference_distance, args.repeats)

    rows = [
        ("label_entropy (5x5)", t_ours, "skimage rank.entropy per slice", t_ref,
         f"max|diff| {err_all:.1e} (interior {err_in:.1e})"),
        ("distance_weight_map (sigma 10)", t_dist, "EDT per slice + gaussian_filter", t_dref, ""),
    ]
    maps = {"distance": dist}
    t, maps["entropy"] = best_time(lambda: W.entropy_weight_map(labels), args.repeats)
    rows.append(("entropy_weight_map", t, "", None, ""))
    t, maps["ratio 10:1"] = best_time(lambda: W.ratio_weight_map(boundary, 10), args.repeats)
    rows.append(("ratio_weight_map (10)", t, "", None, ""))
    if not args.skip_border:
        t, maps["border"] = best_time(lambda: W.border_weight_map(boundary), 1)
        rows.append(("border_weight_map (best of 1)", t, "", None, ""))

    print()
    print(f"{'ours':32s} {'time s':>8s}   {'reference':32s} {'time s':>8s} {'ref/ours':>9s}  check")
    print("-" * 112)
    for name, t, ref_name, t_ref_, note in rows:
        ref_s = f"{t_ref_:8.3f}" if t_ref_ is not None else f"{'':8s}"
        ratio = f"{t_ref_ / t:8.1f}x" if t_ref_ is not None else f"{'':9s}"
        print(f"{name:32s} {t:8.3f}   {ref_name:32s} {ref_s} {ratio}  {note}")

    print()
    print("mean weight boundary : non-boundary (normalised maps, mean 1 per slice)")
    for name, w in maps.items():
        ratio = W.class_ratio(w, boundary)
        print(f"  {name:12s} {ratio:6.2f}   min {w.min():.3f}  max {w.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
