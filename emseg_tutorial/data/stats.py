"""Numbers that describe a volume: class fractions, per-slice drift, slice-to-slice change.

Chapter 1 uses them to show the class imbalance and the domain gap; the tests use them to
check that the synthetic twins keep their documented properties.

Examples
--------
>>> from emseg_tutorial.data.synthetic import make_volume
>>> v = make_volume("fibsem", (4, 64, 64), seed=0)
>>> round(float(slice_means(v.image).std()), 1) < 5
True
"""

from __future__ import annotations

import numpy as np

from ..labels import BOUNDARY, class_fractions
from .volume import Volume


def slice_means(image: np.ndarray) -> np.ndarray:
    """Mean intensity of every z slice, ``(Z,)`` float64."""
    return np.asarray(image, dtype=np.float64).mean(axis=(1, 2))


def slice_stds(image: np.ndarray) -> np.ndarray:
    """Intensity standard deviation of every z slice, ``(Z,)`` float64."""
    return np.asarray(image, dtype=np.float64).std(axis=(1, 2))


def neighbour_boundary_dice(labels: np.ndarray) -> float:
    """Mean Dice overlap of the boundary masks of neighbouring slices.

    Close to 1 when membranes barely move from one slice to the next (isotropic, thin
    sections); low when the z step is large compared to the xy pixel (anisotropic stacks).
    Returns NaN for a single slice.
    """
    return boundary_dice_by_gap(labels, [1])[0]


def boundary_dice_by_gap(labels: np.ndarray, gaps) -> np.ndarray:
    """Mean Dice of the boundary masks of slices ``z`` and ``z + gap``, for each gap.

    How fast the label maps change along z: chapter 6 uses it to choose how far apart the
    "wrong" label map of the conditional discriminator must come from (a neighbour's map
    would be nearly right). NaN where the volume has no such pair.

    Examples
    --------
    >>> lab = np.full((4, 6, 6), 2, np.uint8)
    >>> lab[:2, :, 2] = 1          # a straight wall in slices 0-1 ...
    >>> lab[2:, :, 4] = 1          # ... that has moved in slices 2-3
    >>> boundary_dice_by_gap(lab, [1, 2]).round(2).tolist()
    [0.67, 0.0]
    """
    b = np.asarray(labels) == BOUNDARY
    out = []
    for gap in gaps:  # a handful of gaps, each one vectorised over all slice pairs
        if gap < 1 or b.shape[0] <= gap:
            out.append(np.nan)
            continue
        inter = (b[gap:] & b[:-gap]).sum(axis=(1, 2))
        total = b[gap:].sum(axis=(1, 2)) + b[:-gap].sum(axis=(1, 2))
        out.append(float(np.mean(2.0 * inter / np.maximum(total, 1))))
    return np.array(out)


def summary(volumes: dict[str, Volume]) -> "pandas.DataFrame":
    """One row per volume: shape, voxel size, class fractions, intensity and drift numbers.

    Columns: ``shape``, ``voxel (nm)``, ``anisotropy``, one ``% <class>`` column per class,
    ``mean intensity``, ``slice-mean drift (sd)`` (standard deviation of the per-slice means),
    ``neighbour boundary Dice``.
    """
    import pandas as pd

    rows = {}
    for name, v in volumes.items():
        row = {"shape": "x".join(map(str, v.shape)),
               "voxel (nm)": "x".join(f"{s:g}" for s in v.voxel_size) if v.voxel_size else "?",
               "anisotropy": v.anisotropy}
        if v.labels is not None:
            row.update({f"% {k}": 100 * f for k, f in class_fractions(v.labels).items()})
        means = slice_means(v.image)
        row["mean intensity"] = float(means.mean())
        row["slice-mean drift (sd)"] = float(means.std())
        if v.labels is not None:
            row["neighbour boundary Dice"] = neighbour_boundary_dice(v.labels)
        rows[name] = row
    return pd.DataFrame(rows).T
