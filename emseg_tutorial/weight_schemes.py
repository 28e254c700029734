"""Weight maps by name: the ``--weights`` schemes of ``train`` and of the configs.

``"entropy"``, ``"distance"``, ``"distance:R"``, ``"ratio:R"``, ``"border"`` or ``"none"``:
:func:`parse_weight_scheme` checks a name (the CLI and the configs call it up front) and
:func:`weight_map` builds the map with the defaults of :mod:`emseg_tutorial.weights`.

Examples
--------
>>> import numpy as np
>>> parse_weight_scheme("distance:10")
('distance', 10.0)
>>> weight_map(np.array([[0, 1, 2, 2]]), "none")
array([[0., 1., 1., 1.]], dtype=float32)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .labels import BOUNDARY, FOREGROUND, REST, UNLABELLED, check_codes, is_foreground_task
from .weights import _border_weight_map, _distance_weight_map, _entropy_weight_map, _outline, _ratio_weight_map

__all__ = ["WEIGHT_SCHEMES", "parse_weight_scheme", "weight_map"]

#: Names accepted by :func:`weight_map` (``ratio`` is written ``ratio:R``, e.g. ``ratio:10``).
WEIGHT_SCHEMES = ("entropy", "distance", "ratio", "border", "none")


def parse_weight_scheme(scheme: str) -> tuple[str, float | None]:
    """Split a ``--weights`` value into ``(name, ratio)``: ``"ratio:10"`` -> ``("ratio", 10.0)``.

    ``distance:R`` is the smoothed distance map rescaled so that boundary pixels carry ``R``
    times the mean weight of the rest (the paper's "10:1 smoothed distance" figure).

    Examples
    --------
    >>> parse_weight_scheme("ratio:10"), parse_weight_scheme("entropy")
    (('ratio', 10.0), ('entropy', None))
    """
    expected = "entropy, distance, distance:R, ratio:R (R > 0, e.g. ratio:10), border or none"
    if not isinstance(scheme, str):
        raise ValueError(f"weights must be one of {expected}, got {scheme!r}")
    name, sep, value = scheme.partition(":")
    if name in ("ratio", "distance") and sep:
        try:
            ratio = float(value)
        except ValueError:
            ratio = float("nan")
        if not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"weights {name}:R needs a number R > 0, got {scheme!r}")
        return name, ratio
    if name in WEIGHT_SCHEMES and name != "ratio" and not sep:
        return name, None
    raise ValueError(f"weights must be one of {expected}, got {scheme!r}")


def weight_map(labels: npt.ArrayLike, scheme: str = "entropy", task: str = "boundary") -> np.ndarray:
    """The weight map named by ``scheme`` with default settings (``--weights`` of ``train``).

    ``"entropy"`` :func:`~emseg_tutorial.weights.entropy_weight_map`, ``"distance"`` / ``"distance:R"``
    :func:`~emseg_tutorial.weights.distance_weight_map` (with ``ratio=R``),
    ``"ratio:R"`` :func:`~emseg_tutorial.weights.ratio_weight_map`, ``"border"``
    :func:`~emseg_tutorial.weights.border_weight_map`,
    ``"none"`` 1 on every labelled pixel. All are normalised to mean 1 per slice.
    ``labels`` are checked once, with :func:`~emseg_tutorial.labels.check_codes`, whatever
    the scheme (so a bool mask is refused here: pass codes). They hold the codes of ``task``
    (:func:`~emseg_tutorial.labels.for_task`); ``task`` only matters for a foreground task, see
    :func:`weight_map_of_codes`.

    Examples
    --------
    >>> import numpy as np
    >>> weight_map(np.array([[0, 1, 2, 2]]), "ratio:2")
    array([[0.  , 1.5 , 0.75, 0.75]], dtype=float32)
    """
    return weight_map_of_codes(check_codes(labels), scheme, task)


def weight_map_of_codes(codes: np.ndarray, scheme: str = "entropy", task: str = "boundary") -> np.ndarray:
    """:func:`weight_map` of label codes already checked where they entered
    (:func:`~emseg_tutorial.labels.check_codes`, as the trainers' entry checks do): the same
    maps, without checking the same volume again.

    ``codes`` are in the codes of ``task``: code ``1`` is the boundary, or a foreground task's
    class (``mitochondria``, say), ``2`` the rest. What each map means for a blob class rather
    than a wall:

    * ``entropy``: the label entropy is non-zero only where the 5x5 window holds both codes, so
      the weight is a ring about two pixels wide on each side of every object's rim; interiors
      and background get the lowest weight alike (on a one-pixel wall the same window covers
      the wall and both its sides).
    * ``distance`` / ``distance:R``: the smoothed distance map of the class's *outline*
      (:func:`~emseg_tutorial.weights.outline`, its rim pixels), which is to a blob what the
      wall is to a cell: the weight peaks on and near the rims, highest where rims crowd (small
      and touching objects), and falls to ``w_min`` deep inside large objects and far out in the
      background. The map of the class mask itself would instead peak at the centre of the
      largest objects, weighting the pixels that are easiest to get right. ``distance:R``
      gives the outline ``R`` times the mean weight of the rest.
    * ``ratio:R``: the class ``R``, the rest ``1`` (plain class weights, as for the boundary).
    * ``border``: the U-Net paper's own setting: the objects of the class are the cells and the
      rest the gaps, so the weight is high on the background between two close objects.

    Examples
    --------
    >>> import numpy as np
    >>> weight_map_of_codes(np.array([[0, 1, 2, 2]], np.uint8), "none")
    array([[0., 1., 1., 1.]], dtype=float32)
    >>> blob = np.full((1, 64, 64), 2, np.uint8); blob[0, 12:52, 12:52] = 1  # one mitochondrion
    >>> w = weight_map_of_codes(blob, "distance", "mitochondria")
    >>> bool(w[0, 32, 12] > w[0, 32, 32])  # its rim outweighs its centre
    True
    """
    name, ratio = parse_weight_scheme(scheme)
    if name == "entropy":
        return _entropy_weight_map(codes)
    foreground = is_foreground_task(task)
    is_class, labelled = codes == (FOREGROUND if foreground else BOUNDARY), codes != UNLABELLED
    if name == "distance":
        return _distance_weight_map(_outline(is_class) if foreground else is_class, labelled, ratio=ratio)
    if name == "ratio":
        return _ratio_weight_map(is_class, labelled, ratio)
    if name == "border":  # walls: the boundary; blobs: the gaps between them (the rest)
        return _border_weight_map(codes == REST if foreground else is_class, labelled)
    return labelled.astype(np.float32)
