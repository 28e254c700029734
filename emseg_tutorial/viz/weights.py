"""Figures of chapter 2 (``book/02_weight_maps.ipynb``): weight maps, weight profiles, class weights,
and the readings of the paper's distance map that the chapter sets side by side.

Examples
--------
>>> import matplotlib; matplotlib.use("Agg")
>>> labels = np.full((32, 32), 2, np.uint8); labels[:, 15:17] = 1
>>> fig = paper_weight_maps_figure(labels, ncols=2)
>>> [ax.get_title() for ax in fig.axes[:4]]
['labels', 'entropy weights (5x5)', 'distance transform', 'smoothed distance (σ=10)']
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from .._validate import check_number
from ..labels import BOUNDARY
from ..weights import (border_weight_map, boundary_masks, distance_weight_map, entropy_weight_map,
                       rescale_to_mean_one, smoothed_distance_map)
from ..style import BOOK_WIDTH, MAX_COLUMNS
from .common import LABEL_COLORS, label_legend, overlay

__all__ = ["weight_maps_figure", "paper_weight_maps_figure", "weight_profiles", "class_weight_bars",
           "distance_readings"]


def _label_panel(ax, labels: np.ndarray, image: np.ndarray | None, task: str) -> None:
    """Labels alone (opaque colours on black) or over ``image``, with the legend."""
    alone = image is None
    overlay(ax, np.zeros(labels.shape, np.uint8) if alone else image, labels, task,
            alpha=1.0 if alone else 0.45, title="labels")
    label_legend(ax, task, fontsize="small")


def weight_maps_figure(labels_slice: np.ndarray | None, maps: dict[str, np.ndarray],
                       image: np.ndarray | None = None, *, shared: bool = True, ncols: int = 4,
                       task: str = "multiclass", cmap: str = "magma", panel: float = 3.0):
    """The label map of one slice next to weight maps of it, with colorbars.

    Parameters
    ----------
    labels_slice : ndarray of int, (Y, X), or None
        Class codes of the slice, drawn in the first panel (over ``image`` when given);
        ``None`` draws the maps only.
    maps : dict of str to ndarray, each (Y, X)
        Panel title -> map.
    image : ndarray, (Y, X), optional
        The slice's intensities, under the labels.
    shared : bool, optional
        One colour scale and colorbar for all maps (maps on the same scale, e.g. weights
        normalised to mean 1), or one colorbar per panel (different quantities).
    ncols : int, optional
        Panels per row, at most three (:data:`~emseg_tutorial.style.MAX_COLUMNS`).
    task, cmap, panel : optional
        Label codes of ``labels_slice``, colormap of the maps, panel side in inches (made smaller
        where the row would be wider than the book, :data:`~emseg_tutorial.style.BOOK_WIDTH`).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> labels = np.full((32, 32), 2, np.uint8); labels[:, 15:17] = 1
    >>> fig = weight_maps_figure(labels, {"D": smoothed_distance_map(labels, 0)}, shared=False)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['labels', 'D']
    """
    n = len(maps) + (labels_slice is not None)
    ncols = max(1, min(ncols, n, MAX_COLUMNS))
    nrows = -(-n // ncols)
    panel = min(panel, (BOOK_WIDTH - 0.8 * shared) / ncols)
    height = (panel * (1.0 if shared else 0.88) + 0.3) * nrows  # per-panel colorbars narrow the images
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols + 0.8 * shared, height), squeeze=False,
                             layout="constrained")
    axes = list(axes.ravel())
    for ax in axes[n:]:
        ax.axis("off")
    if labels_slice is not None:
        _label_panel(axes.pop(0), labels_slice, image, task)
    vmax = max(float(np.max(m)) for m in maps.values()) if shared else None
    for ax, (title, m) in zip(axes, maps.items()):
        im = ax.imshow(m, cmap=cmap, vmin=0 if shared else None, vmax=vmax)
        ax.set(xticks=[], yticks=[], title=title)
        if not shared:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if shared and maps:
        fig.colorbar(im, ax=axes[:len(maps)], shrink=0.85, pad=0.02, label="weight")
    return fig


def paper_weight_maps_figure(labels_slice: np.ndarray, image: np.ndarray | None = None,
                             size: int = 5, sigma: float = 10.0, ncols: int = 2):
    """The paper's Fig. 3 for one slice: labels, entropy weights, distance transform, smoothed.

    Parameters
    ----------
    labels_slice : ndarray of int, (Y, X)
        Class codes (4-class or boundary task).
    image : ndarray, (Y, X), optional
        Intensities under the labels.
    size : int, optional
        Window side of the label entropy (the paper's 5).
    sigma : float, optional
        Gaussian sigma of the smoothed distance transform (the paper's 10).
    ncols : int, optional
        Panels per row (2: a 2 x 2 grid; more is drawn as 3, the most that fit the book's width).

    Returns
    -------
    matplotlib.figure.Figure
        Each map with its own colorbar (they are different quantities).
    """
    maps = {f"entropy weights ({size}x{size})": entropy_weight_map(labels_slice, size),
            "distance transform": smoothed_distance_map(labels_slice, 0),
            f"smoothed distance (σ={sigma:g})": smoothed_distance_map(labels_slice, sigma)}
    return weight_maps_figure(labels_slice, maps, image, shared=False, ncols=ncols)


def weight_profiles(profiles: dict[str, np.ndarray], boundary: np.ndarray, ax=None,
                    xlabel: str = "x (pixels)", ylabel: str = "weight"):
    """Curves along one line of a slice, with the boundary pixels of that line shaded.

    Parameters
    ----------
    profiles : dict of str to 1D ndarray
        Legend label -> values along the line.
    boundary : 1D ndarray
        Boundary mask, or class codes (``1`` = boundary), along the same line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(BOOK_WIDTH, 3.6), layout="constrained")
    boundary = np.asarray(boundary)
    wall = boundary if boundary.dtype == bool else boundary == BOUNDARY
    x = np.arange(wall.size)
    ax.fill_between(x, 0, 1, where=wall, step="mid", transform=ax.get_xaxis_transform(),
                    color=LABEL_COLORS[1], alpha=0.3, lw=0, label="boundary pixels")
    for label, values in profiles.items():
        ax.plot(x, values, lw=1.4, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, wall.size - 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def class_weight_bars(table, ax=None):
    """Mean weight on boundary and on non-boundary pixels for each scheme, ratio on top.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per weighting scheme (the index), columns ``"boundary"`` and
        ``"non-boundary"``: mean weights on the pixels of each class.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(BOOK_WIDTH, 3.6), layout="constrained")
    x = np.arange(len(table))
    for i, column in enumerate(["boundary", "non-boundary"]):
        ax.bar(x + (i - 0.5) * 0.4, table[column], 0.4, label=column,
               color=LABEL_COLORS[1] if i == 0 else LABEL_COLORS[2])
    for xi, (b, rest) in zip(x, zip(table["boundary"], table["non-boundary"])):
        ax.annotate(f"{b / rest:.1f}:1", (xi, max(b, rest)), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize="small")
    ax.set_xticks(x, table.index, rotation=20)
    ax.set_ylabel("mean weight")
    ax.margins(y=0.12)
    ax.legend()
    return fig


# --------------------------------------------------------------------------------------
# the readings of the paper's distance map (chapter 2's table)
# --------------------------------------------------------------------------------------
def _slices(array: np.ndarray) -> np.ndarray:
    """A (Y, X) or (Z, Y, X) array as a stack of slices (a view)."""
    return array.reshape((-1, *array.shape[-2:]))


def _wall_distance(is_boundary: np.ndarray) -> np.ndarray:
    """Distance (pixels) of every pixel to the nearest boundary pixel of its slice, 0 on walls;
    a slice without boundary gets ``inf``."""
    mask = _slices(is_boundary)
    d = np.full(mask.shape, np.inf, dtype=np.float32)
    for z, plane in enumerate(mask):
        if plane.any():
            d[z] = ndi.distance_transform_edt(~plane)
    return d.reshape(is_boundary.shape)


#: The readings of the paper's distance-transform weights built by :func:`distance_readings`.
DISTANCE_READINGS = ("distance", "distance:10", "distance to wall", "wall proximity", "border")


def distance_readings(boundary: npt.ArrayLike, sigma: float = 10.0) -> dict[str, np.ndarray]:
    """Every reading of the paper's "distance transform" weights, one map per reading.

    The paper (Sec. 4.2, Fig. 3, Fig. 5c) names a Gaussian-smoothed distance transform of the
    boundary map and a "10:1 smoothed distance transform" but not the transform's direction or
    how it becomes a weight. The readings, all ``w_min = 1``, ``scale = 9`` affine maps of
    their quantity and normalised to mean 1 per slice, like every map of this module:

    ``distance``
        The library's (and M2's): EDT *inside* the walls, Gaussian-smoothed
        (:func:`~emseg_tutorial.weights.distance_weight_map`).
    ``distance:10``
        The same, boundary pixels rescaled to a 10:1 mean ratio (``ratio=10``).
    ``distance to wall``
        ``d``, the EDT of the non-boundary pixels (distance to the nearest wall): 0 on the
        walls, largest in cell centres.
    ``wall proximity``
        ``exp(-d^2 / 2 sigma^2)``: highest on and near every wall, whatever its thickness.
    ``border``
        :func:`~emseg_tutorial.weights.border_weight_map`, the U-Net's separation weights (a distance reading too:
        distances to the two nearest cells).

    Parameters
    ----------
    boundary : array_like, shape (Y, X) or (Z, Y, X)
        Class codes (``1`` boundary, ``0`` unlabelled, others the rest) or a bool mask.
    sigma : float, optional
        Gaussian width in pixels of ``distance``, ``distance:10`` and ``wall proximity``.

    Returns
    -------
    dict of str to ndarray of float32
        Keys :data:`DISTANCE_READINGS`; compare them with
        :func:`~emseg_tutorial.weights.class_ratio`.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.full((9, 9), 2, dtype=np.uint8); labels[:, 4] = 1
    >>> from emseg_tutorial.weights import class_ratio
    >>> maps = distance_readings(labels, sigma=2)
    >>> round(class_ratio(maps["distance to wall"], labels), 2)  # walls lighter than the rest
    0.15
    """
    is_boundary, labelled = boundary_masks(boundary)
    sigma = check_number(sigma, "sigma")
    d = _wall_distance(is_boundary)
    finite = np.where(np.isfinite(d), d, 0.0)
    peak = _slices(finite).max(axis=(1, 2))
    to_wall = 1.0 + 9.0 * _slices(finite) / np.where(peak > 0, peak, 1.0)[:, None, None]
    proximity = 1.0 + 9.0 * np.exp(-(d.astype(np.float64) ** 2) / (2 * sigma**2))
    return {
        "distance": distance_weight_map(boundary, sigma),
        "distance:10": distance_weight_map(boundary, sigma, ratio=10.0),
        "distance to wall": rescale_to_mean_one(to_wall.reshape(d.shape), labelled),
        "wall proximity": rescale_to_mean_one(proximity, labelled),
        "border": border_weight_map(boundary),
    }
