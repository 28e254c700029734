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

from .labels import BOUNDARY, UNLABELLED, check_codes
from .weights import _border_weight_map, _distance_weight_map, _entropy_weight_map, _ratio_weight_map

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


def weight_map(labels: npt.ArrayLike, scheme: str = "entropy") -> np.ndarray:
    """The weight map named by ``scheme`` with default settings (``--weights`` of ``train``).

    ``"entropy"`` :func:`~emseg_tutorial.weights.entropy_weight_map`, ``"distance"`` / ``"distance:R"``
    :func:`~emseg_tutorial.weights.distance_weight_map` (with ``ratio=R``),
    ``"ratio:R"`` :func:`~emseg_tutorial.weights.ratio_weight_map`, ``"border"``
    :func:`~emseg_tutorial.weights.border_weight_map`,
    ``"none"`` 1 on every labelled pixel. All are normalised to mean 1 per slice.
    ``labels`` are checked once, with :func:`~emseg_tutorial.labels.check_codes`, whatever
    the scheme (so a bool mask is refused here: pass codes).

    Examples
    --------
    >>> import numpy as np
    >>> weight_map(np.array([[0, 1, 2, 2]]), "ratio:2")
    array([[0.  , 1.5 , 0.75, 0.75]], dtype=float32)
    """
    return weight_map_of_codes(check_codes(labels), scheme)


def weight_map_of_codes(codes: np.ndarray, scheme: str = "entropy") -> np.ndarray:
    """:func:`weight_map` of label codes already checked where they entered
    (:func:`~emseg_tutorial.labels.check_codes`, as the trainers' entry checks do): the same
    maps, without checking the same volume again.

    Examples
    --------
    >>> import numpy as np
    >>> weight_map_of_codes(np.array([[0, 1, 2, 2]], np.uint8), "none")
    array([[0., 1., 1., 1.]], dtype=float32)
    """
    name, ratio = parse_weight_scheme(scheme)
    if name == "entropy":
        return _entropy_weight_map(codes)
    is_boundary, labelled = codes == BOUNDARY, codes != UNLABELLED
    if name == "distance":
        return _distance_weight_map(is_boundary, labelled, ratio=ratio)
    if name == "ratio":
        return _ratio_weight_map(is_boundary, labelled, ratio)
    if name == "border":
        return _border_weight_map(is_boundary, labelled)
    return labelled.astype(np.float32)
