"""Cells from walls: instance segmentations of boundary maps and of class codes.

The algorithm behind the instance scores of :mod:`emseg_tutorial.metrics`: connected
non-boundary regions in each z-slice (the paper's 2D setting), optionally flooded over the
boundary map (watershed), and wall pixels given to their nearest cell (:func:`grow_cells`).
Pure functions on numpy arrays; inputs are checked by the public function they enter.

Examples
--------
>>> import numpy as np
>>> cells = segment_from_boundary(np.array([[0, 0, 1, 0]], dtype=bool))
>>> cells.tolist(), grow_cells(cells).tolist()
([[1, 1, 0, 2]], [[1, 1, 1, 2]])
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.segmentation import expand_labels, relabel_sequential, watershed

from . import labels as _labels
from ._validate import check_volume_array

__all__ = ["SEGMENTATION_METHODS", "segment_from_boundary", "grow_cells", "true_segmentation_from_labels"]

SEGMENTATION_METHODS = ("components", "watershed")


def _plane_structure(ndim: int, connectivity: int) -> np.ndarray:
    """In-plane neighbourhood: 2D ``(3, 3)``; for 3D a ``(3, 3, 3)`` structure whose only
    non-zero plane is the middle one (``ndimage.label`` wants every side to be 3), so
    slices stay apart."""
    if connectivity not in (1, 2):
        raise ValueError(
            f"connectivity must be 1 (4 neighbours) or 2 (8 neighbours), got {connectivity!r}"
        )
    plane = ndimage.generate_binary_structure(2, connectivity)
    if ndim == 2:
        return plane
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = plane
    return structure



def segment_from_boundary(
    boundary: npt.ArrayLike,
    *,
    method: str = "components",
    threshold: float = 0.5,
    min_size: int = 0,
    connectivity: int = 1,
) -> np.ndarray:
    """Cut cells out of a boundary map, slice by slice.

    Parameters
    ----------
    boundary : (Y, X) or (Z, Y, X) ndarray
        Boundary mask (``bool``, or integers ``0``/``1``) or boundary probability
        (floats in ``[0, 1]``).
    method : {"components", "watershed"}, optional
        ``"components"`` (default): connected components of non-boundary pixels; boundary
        pixels get label ``0``. ``"watershed"``: those components are markers, flooded
        over the boundary map with :func:`skimage.segmentation.watershed`, so boundary
        pixels are assigned to cells too.
    threshold : float, optional
        A probability ``>= threshold`` is boundary. Ignored for masks.
    min_size : int, optional
        Components (markers) with fewer pixels are dropped: with ``"components"`` they
        become ``0``; with ``"watershed"`` their pixels are flooded by neighbouring cells.
        ``0`` (default) keeps everything.
    connectivity : {1, 2}, optional
        In-plane neighbourhood of a cell: ``1`` (default) 4 neighbours, so a one-pixel
        diagonal boundary line separates cells; ``2`` 8 neighbours.

    Returns
    -------
    segmentation : ndarray of int32, same shape as `boundary`
        Cell labels ``1..N``, unique across the whole volume (a cell never spans two
        slices); ``0`` for boundary pixels (``"components"``) or pixels no marker reached
        (``"watershed"`` in a slice without markers).

    Notes
    -----
    Slices are independent: labelling and flooding only connect pixels within a z-slice,
    following the paper's 2D setting. With ``"watershed"`` a boundary pixel joins the
    cell whose flood reaches it first, i.e. the side with the lower boundary probability.

    How the scores see label ``0``: :func:`~emseg_tutorial.metrics.instance_scores` passes
    ``ignore_labels`` to skimage, which ignores those labels in the *true* segmentation
    only. Predicted ``0`` pixels that fall on true boundary (``0`` in
    :func:`true_segmentation_from_labels`) are therefore ignored, but those on true cell
    pixels count as one more segment that merges with every cell it touches (adapted Rand
    precision and ``voi_merge`` go down/up). Use ``method="watershed"`` to give every pixel a cell.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[0, 0, 1, 0],
    ...                  [0, 0, 1, 0]], dtype=bool)
    >>> segment_from_boundary(mask)
    array([[1, 1, 0, 2],
           [1, 1, 0, 2]], dtype=int32)
    >>> prob = np.array([[0.1, 0.4, 0.9, 0.2],
    ...                  [0.1, 0.3, 0.8, 0.1]])
    >>> segment_from_boundary(prob, method="watershed")
    array([[1, 1, 2, 2],
           [1, 1, 2, 2]], dtype=int32)
    """
    if method not in SEGMENTATION_METHODS:
        raise ValueError(f"method must be one of {SEGMENTATION_METHODS}, got {method!r}")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not 0 <= threshold <= 1
    ):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) or min_size < 0:
        raise ValueError(f"min_size must be an integer >= 0, got {min_size!r}")

    array = check_volume_array(boundary, "boundary")
    if array.dtype == bool:
        mask = array
    elif array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                "an integer boundary map must be a 0/1 mask, got values in "
                f"{int(array.min())}..{int(array.max())} (for class codes pass codes == 1)"
            )
        mask = array.astype(bool)
    elif array.dtype.kind == "f":
        _check_probability(array)
        mask = array >= threshold
    else:
        raise ValueError(
            f"boundary must be a bool mask or float probabilities, got dtype {array.dtype}"
        )
    return _segment_from_boundary(array, mask, method, min_size, connectivity)


def _check_probability(array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError("a boundary probability must be finite and within [0, 1]")


def _segment_from_boundary(
    array: np.ndarray, mask: np.ndarray, method: str, min_size: int, connectivity: int
) -> np.ndarray:
    """:func:`segment_from_boundary` of a checked boundary ``array`` (bool, 0/1 or
    probabilities in [0, 1]) and its bool ``mask``; checked ``method`` and ``min_size``."""
    structure = _plane_structure(array.ndim, connectivity)
    cells, _ = ndimage.label(~mask, structure=structure)
    if min_size > 1:
        sizes = np.bincount(cells.ravel())
        small = sizes < min_size
        small[0] = False
        cells[small[cells]] = 0
    if method == "watershed":
        elevation = array.astype(np.float32) if array.dtype.kind != "f" else array
        cells = watershed(elevation, markers=cells, connectivity=structure)
    return relabel_sequential(cells)[0].astype(np.int32, copy=False)


def grow_cells(segmentation: npt.ArrayLike) -> np.ndarray:
    """Give every unlabelled (``0``) pixel to the nearest cell of its slice.

    :func:`skimage.segmentation.expand_labels` applied slice by slice (cells never grow
    across slices, as in the paper's 2D setting), far enough to fill each slice; a slice
    without any cell stays ``0``.

    Examples
    --------
    >>> import numpy as np
    >>> grow_cells(np.array([[1, 0, 0, 0, 2]]))
    array([[1, 1, 1, 2, 2]], dtype=int32)
    """
    cells = check_volume_array(segmentation, "segmentation")
    flat = cells if cells.ndim == 3 else cells[np.newaxis]
    reach = max(flat.shape[1:])
    grown = np.stack([expand_labels(s, distance=reach) if s.any() else s for s in flat])
    return grown.reshape(cells.shape).astype(np.int32, copy=False)


def true_segmentation_from_labels(labels: npt.ArrayLike, *, connectivity: int = 1) -> np.ndarray:
    """Ground-truth cells: connected non-boundary labelled pixels in each slice.

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) ndarray of int
        Class codes in ``0..4`` (4-class or boundary-task codes).
    connectivity : {1, 2}, optional
        In-plane neighbourhood, as in :func:`segment_from_boundary`.

    Returns
    -------
    segmentation : ndarray of int32, same shape as `labels`
        Cell labels ``1..N`` (unique across slices) for codes ``>= 2`` (cytoplasm,
        mitochondria and glia of a cell are one segment); ``0`` for boundary and
        unlabelled pixels, which :func:`~emseg_tutorial.metrics.instance_scores` ignores by
        default.

    Examples
    --------
    >>> import numpy as np
    >>> true_segmentation_from_labels(np.array([[2, 3, 1, 2],
    ...                                         [0, 2, 1, 4]]))
    array([[1, 1, 0, 2],
           [0, 1, 0, 2]], dtype=int32)
    """
    return _true_segmentation_from_labels(_labels.check_codes(labels), connectivity)


def _true_segmentation_from_labels(labels: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """:func:`true_segmentation_from_labels` of checked codes."""
    structure = _plane_structure(labels.ndim, connectivity)
    cells, _ = ndimage.label(labels >= _labels.NON_BOUNDARY, structure=structure)
    return cells.astype(np.int32, copy=False)
