"""Per-pixel loss weights against class imbalance: the paper's maps and two baselines.

Pure functions on numpy arrays, in the style of :mod:`skimage.filters.rank`. Inputs are 2D
``(Y, X)`` or 3D ``(Z, Y, X)`` arrays of integer class codes (see :mod:`emseg_tutorial.labels`;
``0`` is unlabelled) or, where a function says so, boolean boundary masks. A 3D array is a
stack of independent 2D slices: every map is computed slice by slice with a ``(1, k, k)``
footprint, so a 3D result is exactly the stack of the 2D results. Every map is ``float32`` of
the input's shape, ``0`` on unlabelled pixels and ``> 0`` on every labelled pixel.

Input checks run once, in the public functions: labels through
:func:`emseg_tutorial.labels.check_codes` (the library's one label check; a boolean boundary
mask where a function accepts one) and numbers through :func:`emseg_tutorial._validate.check_number`.
Every error is an :class:`~emseg_tutorial._validate.InputError` (a ``ValueError``) naming the
argument. The private ``_..._map`` cores behind them, which
:func:`emseg_tutorial.weight_schemes.weight_map` (a map by its ``--weights`` name) calls directly,
trust their arguments and check nothing.

=================================  ==========================================================
function                           weights
=================================  ==========================================================
:func:`label_entropy`              Shannon entropy (bits) of the labels in a 5x5 window
:func:`entropy_weight_map`         Experiment 1: ``w_min + scale * H / H_max``
:func:`smoothed_distance_map`      distance transform of the boundary mask, Gaussian-smoothed
:func:`distance_weight_map`        Experiment 2: ``w_min + scale * S / max(S)``
:func:`ratio_weight_map`           the paper's 2:1, 5:1, 10:1 baselines
:func:`border_weight_map`          U-Net (Ronneberger et al. 2015) separation weights
:func:`class_ratio`                mean boundary weight over mean weight of the rest
:func:`boundary_masks`             boundary and labelled pixels of codes or a mask (to build maps)
:func:`outline`                    the rim of a blob class (what a wall is to the boundary task)
:func:`rescale_to_mean_one`        a map of your own, finished like these (``normalize=True``)
=================================  ==========================================================

The paper says *which* quantity drives each map but not how it becomes a weight without
giving most pixels weight 0; the choices made here are stated in each function's Notes.
By default every map is rescaled so that its mean over the labelled pixels of each slice is 1
(``normalize=True``): the loss then has the same scale whatever map is used, and only the
*shape* of the map differs between experiments.

Examples
--------
>>> import numpy as np
>>> labels = np.array([[2, 2, 1, 2, 2]] * 3, dtype=np.uint8)  # a vertical wall
>>> np.round(ratio_weight_map(labels, 10, normalize=False), 1)
array([[ 1.,  1., 10.,  1.,  1.],
       [ 1.,  1., 10.,  1.,  1.],
       [ 1.,  1., 10.,  1.,  1.]], dtype=float32)
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from ._validate import check_number, check_same_shape, check_volume_array
from .labels import BOUNDARY, UNLABELLED, check_codes

__all__ = [
    "label_entropy",
    "entropy_weight_map",
    "smoothed_distance_map",
    "distance_weight_map",
    "ratio_weight_map",
    "border_weight_map",
    "class_ratio",
    "boundary_masks",
    "outline",
    "rescale_to_mean_one",
]


# --------------------------------------------------------------------------------------
# input checks (public functions only; the private cores trust their arguments)
# --------------------------------------------------------------------------------------
def _boundary_masks(boundary: npt.ArrayLike, name: str = "boundary"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Check ``boundary`` once; ``(is_boundary, is_labelled)`` from a bool mask (every pixel
    labelled) or from label codes (:func:`~emseg_tutorial.labels.check_codes`; 1 = boundary)."""
    array = np.asarray(boundary)
    if array.dtype == bool:
        array = check_volume_array(array, name)
        return array, np.ones(array.shape, dtype=bool)
    codes = check_codes(array, name)
    return codes == BOUNDARY, codes != UNLABELLED


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"size must be an odd integer >= 3, got {type(size).__name__} {size!r}")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 3 (the window is centred), got {size}")
    return int(size)


def _as_3d(array: np.ndarray) -> np.ndarray:
    return array if array.ndim == 3 else array[np.newaxis]


def _finish(weights: np.ndarray, labelled: np.ndarray, normalize: bool, shape: tuple) -> np.ndarray:
    """Zero the unlabelled pixels, optionally rescale each slice to mean 1 over labelled pixels."""
    weights = _as_3d(weights).astype(np.float32, copy=False)
    labelled = _as_3d(labelled)
    weights[~labelled] = 0.0
    if normalize:
        total = weights.sum(axis=(1, 2), dtype=np.float64)
        count = labelled.sum(axis=(1, 2))
        factor = np.where(total > 0, count / np.where(total > 0, total, 1.0), 1.0)
        weights *= factor.astype(np.float32)[:, None, None]
    return weights.reshape(shape)


# --------------------------------------------------------------------------------------
# Experiment 1: label entropy
# --------------------------------------------------------------------------------------
def _box_count(mask: np.ndarray, radius: int, dtype: np.dtype) -> np.ndarray:
    """Number of ``True`` pixels of ``mask`` (Z, Y, X) in each in-plane (2r+1)^2 window,
    clipped to the image (out-of-image pixels count as ``False``). Separable shifted sums."""
    mask = mask.view(np.uint8).astype(dtype, copy=False)
    rows = mask.copy()
    for s in range(1, radius + 1):
        rows[:, :, s:] += mask[:, :, :-s]
        rows[:, :, :-s] += mask[:, :, s:]
    out = rows.copy()
    for s in range(1, radius + 1):
        out[:, s:, :] += rows[:, :-s, :]
        out[:, :-s, :] += rows[:, s:, :]
    return out


def _present_codes(labels: np.ndarray) -> np.ndarray:
    if labels.dtype.itemsize <= 2 or labels.max() < 2**16:
        return np.flatnonzero(np.bincount(labels.ravel()))
    return np.unique(labels)


def label_entropy(labels: npt.ArrayLike, size: int = 5, *, ignore_label: int | None = None
                  ) -> np.ndarray:
    """Shannon entropy (bits) of the class histogram in a ``size x size`` window per pixel.

    Parameters
    ----------
    labels : array_like of int, shape (Y, X) or (Z, Y, X)
        Class codes ``0..4`` (integers or whole-number floats, checked by
        :func:`~emseg_tutorial.labels.check_codes`). 3D input is processed slice by slice.
    size : int, optional
        Odd side of the square window centred on each pixel (the paper's 5).
    ignore_label : int, optional
        Code left out of every histogram (e.g. ``0``, unlabelled). By default every code,
        ``0`` included, is a class of its own, as in :func:`skimage.filters.rank.entropy`.

    Returns
    -------
    entropy : ndarray of float32, same shape as ``labels``
        ``0`` where the window holds one class; at most ``log2(min(K, size**2))`` for K classes.

    Notes
    -----
    For pixel ``p`` with window ``W(p)``, ``n_c`` pixels of class ``c`` and ``N = sum_c n_c``,

    .. math:: H(p) = -\\sum_c \\frac{n_c}{N} \\log_2 \\frac{n_c}{N}
                   = \\log_2 N - \\frac{1}{N} \\sum_c n_c \\log_2 n_c ,

    the entropy the paper (Sec. 4.1) computes on the 5x5 label neighbourhood. Border rule:
    windows are clipped to the image, i.e. the histogram counts only the in-image part of the
    window (``N < size**2`` near the edges). This is also what
    :func:`skimage.filters.rank.entropy` does, so the two agree everywhere (to float32
    precision) on ``uint8`` labels. With ``ignore_label`` those pixels leave the histogram
    (``N`` counts the others); a window with nothing left has entropy ``0``.

    Fast path: for each class present, the window counts ``n_c`` are box sums of the class
    indicator (integer shifted sums, no floats), and ``n log2 n`` is read from a lookup table
    over the integers ``0..size**2``; no logarithm of a float array is taken. Cost grows with
    the number of classes present (any number works; 4 classes of a 64x500x500 volume take a
    fraction of a second).

    References: C. E. Shannon (1948); Roy & Chakraborty, Sec. 4.1.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 1, 2, 2]] * 3)
    >>> np.round(label_entropy(labels, size=3), 3)
    array([[0.   , 0.918, 0.918, 0.   ],
           [0.   , 0.918, 0.918, 0.   ],
           [0.   , 0.918, 0.918, 0.   ]], dtype=float32)
    """
    labels = check_codes(labels)
    size = _check_size(size)
    if ignore_label is not None and (isinstance(ignore_label, bool)
                                     or not isinstance(ignore_label, numbers.Integral)):
        raise TypeError(f"ignore_label must be an integer code or None, got {ignore_label!r}")
    return _label_entropy(labels, size, ignore_label)


def _label_entropy(labels: np.ndarray, size: int, ignore_label: int | None = None) -> np.ndarray:
    """:func:`label_entropy` without checks: ``labels`` any 2D/3D array of non-negative
    integers (codes or more), ``size`` an odd int >= 3, ``ignore_label`` an int or None."""
    vol = _as_3d(labels)
    _, ny, nx = vol.shape
    radius, area = size // 2, size * size
    dtype = np.min_scalar_type(area)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.arange(area + 1, dtype=np.float64)
        table = np.nan_to_num(n * np.log2(n)).astype(np.float32)  # n log2 n, 0 log 0 = 0

    s = np.zeros(vol.shape, dtype=np.float32)  # sum_c n_c log2 n_c
    for code in _present_codes(vol):
        if code == ignore_label:
            continue
        s += table[_box_count(vol == code, radius, dtype)]

    # N: the in-image window area (separable), minus the ignored pixels in the window
    def extent(length: int) -> np.ndarray:
        i = np.arange(length)
        return np.minimum(i + radius, length - 1) - np.maximum(i - radius, 0) + 1

    total = (extent(ny)[:, None] * extent(nx)[None, :]).astype(dtype)[None]
    if ignore_label is not None and (vol == ignore_label).any():
        total = total - _box_count(vol == ignore_label, radius, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (table[total] - s) / total.astype(np.float32)
    h = np.where(total > 0, np.maximum(h, 0.0), 0.0).astype(np.float32, copy=False)
    return h.reshape(labels.shape)


def entropy_weight_map(labels: npt.ArrayLike, size: int = 5, *, w_min: float = 1.0,
                       scale: float = 9.0, n_classes: int = 4,
                       normalize: bool = True) -> np.ndarray:
    """Experiment 1 weights: more weight where the labels around a pixel are mixed.

    Parameters
    ----------
    labels : array_like of int, shape (Y, X) or (Z, Y, X)
        Class codes, ``0`` unlabelled.
    size : int, optional
        Odd window side of the entropy (the paper's 5).
    w_min : float, optional
        Weight of a pixel whose window holds one class (must be > 0: no pixel is ignored).
    scale : float, optional
        Extra weight at the largest possible entropy; the default 9 gives weights in
        ``[1, 10]`` before normalisation (pixels on a thin wall get about 5-6).
    n_classes : int, optional
        Number of classes ``K`` in ``H_max`` (the paper's 4). A fixed number, not one counted
        in the data, so that a slice's weights never depend on the other slices. With 2
        (boundary-task labels) walls get about twice the extra weight.
    normalize : bool, optional
        Rescale each slice so the mean weight over its labelled pixels is 1 (default).

    Returns
    -------
    weights : ndarray of float32, same shape as ``labels``
        ``0`` on unlabelled pixels, ``> 0`` elsewhere.

    Notes
    -----
    With ``H`` the :func:`label_entropy` (unlabelled pixels left out of the histograms, so a
    labelled pixel next to an unannotated area does not look like a class transition),

    .. math:: w = w_{min} + \\mathrm{scale} \\cdot H / H_{max}, \\qquad
              H_{max} = \\log_2 \\min(K, \\mathrm{size}^2).

    The paper (Sec. 4.1) only says that pixels of higher entropy get more weight. Used
    directly, ``w = H`` gives weight 0 to every pixel inside a uniform region -- most of the
    volume -- so the network would learn nothing about cell interiors. Alternatives the book
    compares: ``1 + H`` (boundary at most 3x the interior for 4 classes: too weak),
    ``exp(H)`` (same issue, less readable), and the affine map used here, whose two numbers
    say what they do: interior pixels get ``w_min``, the most mixed windows ``w_min + scale``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[2, 2, 1, 2, 2]] * 3, dtype=np.uint8)
    >>> np.round(entropy_weight_map(labels, 3, normalize=False), 2)  # H = 0.918 bits on the wall
    array([[1.  , 5.13, 5.13, 5.13, 1.  ],
           [1.  , 5.13, 5.13, 5.13, 1.  ],
           [1.  , 5.13, 5.13, 5.13, 1.  ]], dtype=float32)
    """
    labels = check_codes(labels)
    size = _check_size(size)
    w_min = check_number(w_min, "w_min")
    scale = check_number(scale, "scale", strict=False)
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    return _entropy_weight_map(labels, size, w_min=w_min, scale=scale, n_classes=int(n_classes),
                               normalize=normalize)


def _entropy_weight_map(codes: np.ndarray, size: int = 5, *, w_min: float = 1.0,
                        scale: float = 9.0, n_classes: int = 4,
                        normalize: bool = True) -> np.ndarray:
    """:func:`entropy_weight_map` of checked ``codes`` (uint8 from ``check_codes``) and
    checked numbers; same defaults."""
    h_max = math.log2(min(n_classes, size * size))
    weights = w_min + (scale / h_max) * _label_entropy(codes, size, UNLABELLED)
    return _finish(weights, codes != UNLABELLED, normalize, codes.shape)


# --------------------------------------------------------------------------------------
# Experiment 2: smoothed distance transform, and the ratio baselines
# --------------------------------------------------------------------------------------
def smoothed_distance_map(boundary: npt.ArrayLike, sigma: float = 10.0) -> np.ndarray:
    """Distance transform of the boundary mask, smoothed with a Gaussian (paper Fig. 3).

    Parameters
    ----------
    boundary : array_like, shape (Y, X) or (Z, Y, X)
        Bool mask (``True`` = boundary) or class codes (``1`` = boundary).
    sigma : float, optional
        Gaussian sigma in pixels (the paper's 10); ``0`` returns the raw distance transform.

    Returns
    -------
    distance : ndarray of float32, same shape as ``boundary``

    Notes
    -----
    ``D(p)`` is the Euclidean distance from boundary pixel ``p`` to the nearest non-boundary
    pixel of its slice (``scipy.ndimage.distance_transform_edt`` of the mask), ``0`` off the
    boundary: wall centres and junctions, where walls are thick, score highest. Then
    ``S = G_sigma * D`` per slice (``scipy.ndimage.gaussian_filter``, sigma ``(0, s, s)``,
    mode ``"reflect"``). This is the reading under which the paper's remark makes sense: the
    raw ``D`` is 0 on every non-boundary pixel, and smoothing "avoids giving 0 weights to most
    of the non-boundary pixels". A slice that is all boundary gets ``D = 1``.

    Examples
    --------
    >>> import numpy as np
    >>> wall = np.zeros((3, 7), dtype=bool); wall[:, 2:5] = True
    >>> smoothed_distance_map(wall, sigma=0)[0]
    array([0., 0., 1., 2., 1., 0., 0.], dtype=float32)
    """
    is_boundary, _ = _boundary_masks(boundary)
    sigma = check_number(sigma, "sigma", strict=False)
    return _smoothed_distance_map(is_boundary, sigma)


def _smoothed_distance_map(is_boundary: np.ndarray, sigma: float) -> np.ndarray:
    """:func:`smoothed_distance_map` of a checked 2D/3D bool mask and a float ``sigma >= 0``."""
    mask = _as_3d(is_boundary)
    distance = np.zeros(mask.shape, dtype=np.float32)
    for z, plane in enumerate(mask):
        if plane.all():
            distance[z] = 1.0
        elif plane.any():
            distance[z] = ndi.distance_transform_edt(plane)
    if sigma > 0:
        distance = ndi.gaussian_filter(distance, sigma=(0, sigma, sigma), mode="reflect")
    return distance.reshape(is_boundary.shape)


def _per_slice_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=(1, 2))
    total = np.where(mask, values, 0).sum(axis=(1, 2), dtype=np.float64)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _apply_ratio(weights: np.ndarray, is_boundary: np.ndarray, labelled: np.ndarray,
                 ratio: float) -> np.ndarray:
    """Scale the boundary pixels of each slice so mean(boundary) / mean(rest) == ratio."""
    w, b, lab = _as_3d(weights), _as_3d(is_boundary), _as_3d(labelled)
    mean_b = _per_slice_mean(w, b)
    mean_rest = _per_slice_mean(w, lab & ~b)
    factor = np.where(np.isfinite(mean_b) & np.isfinite(mean_rest) & (mean_b > 0),
                      ratio * mean_rest / np.where(mean_b > 0, mean_b, 1.0), 1.0)
    return np.where(b, w * factor.astype(np.float32)[:, None, None], w).reshape(weights.shape)


def distance_weight_map(boundary: npt.ArrayLike, sigma: float = 10.0, *, w_min: float = 1.0,
                        scale: float = 9.0, ratio: float | None = None,
                        normalize: bool = True) -> np.ndarray:
    """Experiment 2 weights: the smoothed distance transform of the boundary map.

    Parameters
    ----------
    boundary : array_like, shape (Y, X) or (Z, Y, X)
        Bool mask (``True`` = boundary, every pixel labelled) or class codes (``1`` boundary,
        ``0`` unlabelled, anything else non-boundary; 4-class codes work too).
    sigma : float, optional
        Gaussian sigma in pixels (the paper's 10).
    w_min : float, optional
        Weight far from any wall (must be > 0).
    scale : float, optional
        Extra weight at the maximum of the smoothed map in each slice; default 9, so weights
        span ``w_min`` to ``10 * w_min``: one reading of the paper's "10:1 smoothed distance
        transform" (Fig. 5c).
    ratio : float, optional
        The other reading: after the map is built, boundary pixels are scaled so that, in
        each slice, mean weight on the boundary : mean weight on the rest = ``ratio``.
    normalize : bool, optional
        Rescale each slice to mean weight 1 over its labelled pixels (default).

    Returns
    -------
    weights : ndarray of float32, same shape as ``boundary``
        ``0`` on unlabelled pixels, ``> 0`` elsewhere.

    Notes
    -----
    With ``S`` the :func:`smoothed_distance_map` (EDT of the boundary mask, then Gaussian),

    .. math:: w = w_{min} + \\mathrm{scale} \\cdot S / \\max_{\\text{slice}} S .

    Boundary pixels and the pixels next to walls get the highest weight, thick walls and
    junctions most; the weight falls off smoothly (like a Gaussian of the distance to the
    nearest wall, width ``sigma``) to ``w_min`` in cell interiors; no labelled pixel gets 0.
    Other readings of the paper's words, built side by side by
    :func:`emseg_tutorial.viz.weights.distance_readings` and shown with their boundary : rest
    weight ratios in chapter 2: ``ratio`` (above; the ``distance:R`` scheme); the EDT of the
    *non*-boundary pixels (distance to the nearest wall), which is 0 on the boundary and largest
    in cell centres -- the opposite of what class imbalance needs; a decaying transform of it,
    ``w_min + scale * exp(-d^2 / 2 sigma^2)``, which ignores wall thickness; and
    :func:`border_weight_map`, which weights only narrow gaps between cells.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.full((5, 9), 2, dtype=np.uint8); labels[:, 4] = 1
    >>> np.round(distance_weight_map(labels, sigma=1.5, normalize=False)[0], 2)
    array([ 1.29,  2.22,  4.7 ,  8.21, 10.  ,  8.21,  4.7 ,  2.22,  1.29],
          dtype=float32)
    """
    is_boundary, labelled = _boundary_masks(boundary)
    sigma = check_number(sigma, "sigma")
    w_min = check_number(w_min, "w_min")
    scale = check_number(scale, "scale", strict=False)
    if ratio is not None:
        ratio = check_number(ratio, "ratio")
    return _distance_weight_map(is_boundary, labelled, sigma, w_min=w_min, scale=scale,
                                ratio=ratio, normalize=normalize)


def _distance_weight_map(is_boundary: np.ndarray, labelled: np.ndarray, sigma: float = 10.0, *,
                         w_min: float = 1.0, scale: float = 9.0, ratio: float | None = None,
                         normalize: bool = True) -> np.ndarray:
    """:func:`distance_weight_map` of checked masks (from :func:`_boundary_masks`) and
    checked numbers; same defaults."""
    smooth = _as_3d(_smoothed_distance_map(is_boundary, sigma))
    peak = smooth.max(axis=(1, 2))
    weights = w_min + scale * smooth / np.where(peak > 0, peak, 1.0)[:, None, None]
    if ratio is not None:
        weights = _apply_ratio(weights, _as_3d(is_boundary), _as_3d(labelled), ratio)
    return _finish(weights, labelled, normalize, is_boundary.shape)


def ratio_weight_map(boundary: npt.ArrayLike, ratio: float, *, normalize: bool = True
                     ) -> np.ndarray:
    """Fixed class weights: boundary ``ratio``, non-boundary ``1`` (the paper's baselines).

    Parameters
    ----------
    boundary : array_like, shape (Y, X) or (Z, Y, X)
        Bool mask (``True`` = boundary) or class codes (``1`` boundary, ``0`` unlabelled).
    ratio : float
        Boundary weight relative to non-boundary (the paper tries 2, 5 and 10).
    normalize : bool, optional
        Rescale each slice to mean weight 1 over its labelled pixels (default); the ratio
        between the classes is kept.

    Returns
    -------
    weights : ndarray of float32, same shape as ``boundary``

    Notes
    -----
    ``w = ratio`` on boundary pixels, ``1`` on other labelled pixels, ``0`` on unlabelled
    ones (Roy & Chakraborty, Sec. 5.2). ``ratio = (1 - f) / f`` for a boundary fraction ``f``
    is the inverse-frequency balance (about 9 for the paper's 10 % boundary).

    Examples
    --------
    >>> import numpy as np
    >>> ratio_weight_map(np.array([[0, 1, 2, 2]]), 5, normalize=False)
    array([[0., 5., 1., 1.]], dtype=float32)
    >>> ratio_weight_map(np.array([[0, 1, 2, 2]]), 4)  # mean over labelled pixels is 1
    array([[0. , 2. , 0.5, 0.5]], dtype=float32)
    """
    is_boundary, labelled = _boundary_masks(boundary)
    ratio = check_number(ratio, "ratio")
    return _ratio_weight_map(is_boundary, labelled, ratio, normalize=normalize)


def _ratio_weight_map(is_boundary: np.ndarray, labelled: np.ndarray, ratio: float, *,
                      normalize: bool = True) -> np.ndarray:
    """:func:`ratio_weight_map` of checked masks and a checked ``ratio > 0``."""
    weights = np.where(is_boundary, np.float32(ratio), np.float32(1.0))
    return _finish(weights, labelled, normalize, is_boundary.shape)


# --------------------------------------------------------------------------------------
# U-Net baseline: separation border weights
# --------------------------------------------------------------------------------------
def _colour_graph(n_nodes: int, u: np.ndarray, v: np.ndarray, seed: int = 0) -> np.ndarray:
    """Greedy colouring (Jones-Plassmann): adjacent nodes get different colours.

    Vectorised over the edges ``u[i] -- v[i]``; the loop runs over rounds (about ten), not
    nodes. In each round every uncoloured node whose uncoloured neighbours all have a lower
    random priority takes the smallest colour none of its neighbours has.
    """
    u, v = np.concatenate([u, v]), np.concatenate([v, u])
    priority = np.random.default_rng(seed).permutation(n_nodes)
    colour = np.full(n_nodes, -1, dtype=np.int64)
    while (todo := colour < 0).any():
        waits = todo[u] & todo[v] & (priority[v] > priority[u])
        ready = todo.copy()
        ready[u[waits]] = False
        known = ready[u] & ~todo[v]
        used = np.zeros(n_nodes, dtype=np.int64)  # bit c set: a neighbour has colour c
        np.bitwise_or.at(used, u[known], np.left_shift(1, colour[v[known]]))
        lowest_free = ~used & (used + 1)
        colour[ready] = np.frexp(lowest_free[ready].astype(np.float64))[1] - 1
        if colour.max() > 60:
            raise RuntimeError("instance graph needs more than 60 colours")
    return colour


def _nearest_two_distances(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the distances ``d1 <= d2`` to the nearest and second-nearest instance
    (``inf`` when missing), for cells ``(Z, Y, X)`` labelled 1..n slice by slice."""
    n = int(cells.max())
    d1 = np.full(cells.shape, np.inf, dtype=np.float32)
    d2 = np.full(cells.shape, np.inf, dtype=np.float32)
    if n == 0:
        return d1, d2
    # 1. nearest-instance (Voronoi) regions; instances whose regions touch are graph edges
    nearest = np.zeros_like(cells)
    for z, plane in enumerate(cells):
        if plane.any():
            iy, ix = ndi.distance_transform_edt(plane == 0, return_distances=False,
                                                return_indices=True)
            nearest[z] = plane[iy, ix]
    pairs = []
    for a, b in ((nearest[:, :, 1:], nearest[:, :, :-1]),
                 (nearest[:, 1:], nearest[:, :-1]),
                 (nearest[:, 1:, 1:], nearest[:, :-1, :-1]),
                 (nearest[:, 1:, :-1], nearest[:, :-1, 1:])):  # 8-neighbour contacts
        touch = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.minimum(a[touch], b[touch]).astype(np.int64) * (n + 1)
                     + np.maximum(a[touch], b[touch]))
    edges = np.unique(np.concatenate(pairs))
    # 2. colour the instances so that touching ones differ; 3. one EDT per colour
    colour = _colour_graph(n + 1, edges // (n + 1), edges % (n + 1)).astype(np.int16)
    colour[0] = -1  # not a cell
    colour_map = colour[cells]
    for c in range(int(colour.max()) + 1):
        for z, plane in enumerate(colour_map):
            if (plane == c).any():
                d = ndi.distance_transform_edt(plane != c).astype(np.float32)
                np.minimum(d2[z], np.maximum(d1[z], d), out=d2[z])
                np.minimum(d1[z], d, out=d1[z])
    return d1, d2


def border_weight_map(labels: npt.ArrayLike, w0: float = 10.0, sigma: float = 5.0, *,
                      class_balance: bool = True, normalize: bool = True) -> np.ndarray:
    """U-Net separation weights (Ronneberger et al. 2015), a baseline for Experiment 2.

    Parameters
    ----------
    labels : array_like, shape (Y, X) or (Z, Y, X)
        Bool boundary mask or class codes (``1`` boundary, ``0`` unlabelled, others cells).
    w0 : float, optional
        Peak extra weight in the gaps between cells (the U-Net paper's 10).
    sigma : float, optional
        Width of the gap term in pixels (the U-Net paper's about 5).
    class_balance : bool, optional
        Use inverse class frequencies as ``w_c`` (default); otherwise ``w_c = 1``.
    normalize : bool, optional
        Rescale each slice to mean weight 1 over its labelled pixels (default).

    Returns
    -------
    weights : ndarray of float32, same shape as ``labels``

    Notes
    -----
    .. math:: w(x) = w_c(x) + w_0 \\exp\\left(-\\frac{(d_1(x) + d_2(x))^2}{2\\sigma^2}\\right)

    Cells are the 4-connected components of labelled non-boundary pixels of each slice;
    ``d1``, ``d2`` are the distances from ``x`` to the nearest and second-nearest cell (as
    pixel sets: a pixel inside a cell has ``d1 = 0`` and ``d2`` the distance to the nearest
    other cell, as in common implementations). The term is large only where two cells are
    close, i.e. on narrow walls and next to them. ``w_c = N / (K n_k)`` for a pixel of
    class ``k`` (boundary / non-boundary) with ``n_k`` pixels in the slice, ``N`` labelled pixels
    and ``K`` classes present, so the mean of ``w_c`` is 1.

    ``d1`` and ``d2`` without one distance transform per cell: the cells are coloured so that
    cells whose nearest-cell (Voronoi) regions touch get different colours (a vectorised
    greedy colouring, usually 5-7 colours); one EDT per colour gives the distance to the
    nearest cell of that colour; ``d1``, ``d2`` are the two smallest over colours. This is
    exact: the second-nearest cell of a pixel in the Voronoi region of cell A is a cell whose
    region touches A's (the straight path to it crosses only those two regions), so it never
    shares A's colour.

    References: O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
    Biomedical Image Segmentation", MICCAI 2015, Eq. 2.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.full((3, 7), 2, dtype=np.uint8); labels[:, 3] = 1  # two cells, one wall
    >>> w = border_weight_map(labels, sigma=2, class_balance=False, normalize=False)
    >>> np.round(w[0], 2)  # d1 + d2 = 4, 3, 2, 2, 2, 3, 4
    array([2.35, 4.25, 7.07, 7.07, 7.07, 4.25, 2.35], dtype=float32)
    """
    is_boundary, labelled = _boundary_masks(labels, "labels")
    w0 = check_number(w0, "w0", strict=False)
    sigma = check_number(sigma, "sigma")
    return _border_weight_map(is_boundary, labelled, w0, sigma, class_balance=class_balance,
                              normalize=normalize)


def _border_weight_map(is_boundary: np.ndarray, labelled: np.ndarray, w0: float = 10.0,
                       sigma: float = 5.0, *, class_balance: bool = True,
                       normalize: bool = True) -> np.ndarray:
    """:func:`border_weight_map` of checked masks and checked numbers; same defaults."""
    b, lab = _as_3d(is_boundary), _as_3d(labelled)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndi.generate_binary_structure(2, 1)  # in-plane, 4-connected
    cells, _ = ndi.label(lab & ~b, structure=structure)
    d1, d2 = _nearest_two_distances(cells)
    gap = w0 * np.exp(-((d1 + d2) ** 2) / np.float32(2 * sigma**2))  # exp(-inf) = 0
    if class_balance:
        n_b, n_rest = (b & lab).sum(axis=(1, 2)), (lab & ~b).sum(axis=(1, 2))
        k = (n_b > 0).astype(int) + (n_rest > 0)
        total = (n_b + n_rest) / np.maximum(k, 1)
        w_b, w_rest = total / np.maximum(n_b, 1), total / np.maximum(n_rest, 1)
        w_c = np.where(b, w_b[:, None, None], w_rest[:, None, None]).astype(np.float32)
    else:
        w_c = np.float32(1.0)
    return _finish(w_c + gap, lab, normalize, is_boundary.shape)


# --------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------
def class_ratio(weights: npt.ArrayLike, boundary: npt.ArrayLike) -> float:
    """Mean weight on boundary pixels divided by mean weight on the other labelled pixels.

    Parameters
    ----------
    weights : array_like of float
        A weight map.
    boundary : array_like
        Bool mask or class codes (``1`` boundary, ``0`` unlabelled), same shape.

    Returns
    -------
    float
        ``nan`` when either class is missing.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 2, 2, 0]])
    >>> round(class_ratio(ratio_weight_map(labels, 5), labels), 6)
    5.0
    """
    weights = check_volume_array(weights, "weights")
    is_boundary, labelled = _boundary_masks(boundary)
    check_same_shape(weights, is_boundary, "weights", "boundary")
    rest = labelled & ~is_boundary
    if not is_boundary.any() or not rest.any():
        return float("nan")
    return float(weights[is_boundary].mean(dtype=np.float64)
                 / weights[rest].mean(dtype=np.float64))


def boundary_masks(boundary: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(is_boundary, is_labelled)`` of class codes or a bool mask, as every map here reads them.

    Parameters
    ----------
    boundary : array_like, shape (Y, X) or (Z, Y, X)
        Bool mask (``True`` = boundary, every pixel labelled) or class codes (``1`` boundary,
        ``0`` unlabelled), checked with :func:`~emseg_tutorial.labels.check_codes`.

    Returns
    -------
    is_boundary, is_labelled : ndarray of bool, same shape as ``boundary``

    Examples
    --------
    >>> import numpy as np
    >>> [m.astype(int).tolist() for m in boundary_masks(np.array([[0, 1, 2]]))]
    [[[0, 1, 0]], [[0, 1, 1]]]
    """
    return _boundary_masks(boundary)


def outline(mask: npt.ArrayLike) -> np.ndarray:
    """The rim of a bool mask in each slice: its pixels with a 4-neighbour outside it.

    For a foreground task (one blob class against the rest, such as mitochondria) this is what
    the walls are to the boundary task: the thin set of pixels where one class meets the other,
    and the one a distance weight map is built on
    (:func:`emseg_tutorial.weight_schemes.weight_map_of_codes`). The image's edge is not a rim.

    Parameters
    ----------
    mask : array_like of bool, shape (Y, X) or (Z, Y, X)

    Returns
    -------
    ndarray of bool, same shape

    Examples
    --------
    >>> import numpy as np
    >>> blob = np.zeros((5, 5), bool); blob[1:4, 1:4] = True
    >>> outline(blob).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 0, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    mask = check_volume_array(mask, "mask")
    if mask.dtype != bool:
        raise ValueError(f"mask must be a bool mask, got dtype {mask.dtype}")
    return _outline(mask)


def _outline(mask: np.ndarray) -> np.ndarray:
    """:func:`outline` of a checked 2D/3D bool mask."""
    plane = _as_3d(mask)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndi.generate_binary_structure(2, 1)  # in-plane, 4-connected
    inside = ndi.binary_erosion(plane, structure=structure, border_value=1)
    return (plane & ~inside).reshape(mask.shape)


def rescale_to_mean_one(weights: npt.ArrayLike, labelled: npt.ArrayLike) -> np.ndarray:
    """Zero the unlabelled pixels of a weight map and rescale each slice to mean 1 over the rest.

    What ``normalize=True`` does to every map of this module, for maps built elsewhere (chapter
    2's readings of the distance map); a slice whose weights sum to 0 is left as it is.

    Parameters
    ----------
    weights : array_like of float, shape (Y, X) or (Z, Y, X)
        A weight map (not changed: the result is a new array).
    labelled : array_like of bool, same shape
        Labelled pixels (e.g. the second mask of :func:`boundary_masks`).

    Returns
    -------
    ndarray of float32, same shape

    Examples
    --------
    >>> import numpy as np
    >>> rescale_to_mean_one(np.array([[1.0, 3.0, 5.0]]), np.array([[True, True, False]]))
    array([[0.5, 1.5, 0. ]], dtype=float32)
    """
    weights = check_volume_array(weights, "weights")
    labelled = check_volume_array(labelled, "labelled")
    if labelled.dtype != bool:
        raise ValueError(f"labelled must be a bool mask, got dtype {labelled.dtype}")
    check_same_shape(weights, labelled, "weights", "labelled")
    return _finish(weights.astype(np.float32, copy=True), labelled, True, weights.shape)
