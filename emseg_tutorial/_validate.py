"""Input checks shared by the pure core (labels, weights, metrics), the data readers, the trainers,
the samplers and the predictors.

Every check raises :class:`InputError` (a ``ValueError``) whose message starts with the name of
the argument or file and says what was expected and what arrived. Checks run once, where data
enters the library (a reader, a public function, a trainer); the functions behind them state
their contract and trust arrays that passed.

Examples
--------
>>> check_volume_array(np.zeros((4, 5)), "image").shape
(4, 5)
>>> check_volume_array(np.zeros(3), "image")
Traceback (most recent call last):
...
emseg_tutorial._validate.InputError: image: expected a 2D (Y, X) or 3D (Z, Y, X) array, got 1D with shape (3,)
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt


class InputError(ValueError):
    """An argument or file holds data the library cannot use; the message names it."""


def check_volume_array(array: npt.ArrayLike, name: str) -> np.ndarray:
    """``array`` as an ndarray, after checking it is 2D or 3D and not empty."""
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise InputError(f"{name}: expected a 2D (Y, X) or 3D (Z, Y, X) array, got {array.ndim}D "
                         f"with shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{name}: is empty (shape {array.shape})")
    return array


def check_real_dtype(array: np.ndarray, name: str) -> None:
    """Raise unless ``array`` holds real numbers (not bool, complex, strings or objects)."""
    dtype = array.dtype
    if dtype == bool or not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"{name}: expected real numbers, got dtype {dtype}")


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise if a float array holds NaN or infinite values (says how many)."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise InputError(f"{name}: {bad} values are NaN or infinite")


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have the same shape (names both)."""
    if a.shape != b.shape:
        raise InputError(f"{name_b}: shape {b.shape} does not match {name_a}'s shape {a.shape} "
                         f"(they must have the same shape)")


def check_number(value, name: str, *, minimum: float = 0.0, strict: bool = True) -> float:
    """``value`` as a float after checking it is a finite real ``> minimum`` (``>=`` unless strict)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_image(data: npt.ArrayLike, name: str = "image") -> np.ndarray:
    """``data`` as a ``(Z, Y, X)`` image after checking it: 2D or 3D, not empty, real numbers, no
    NaN or infinity. A 2D image becomes ``(1, Y, X)``.

    The image check of the trainers, samplers, predictors and readers (the readers turn its
    :class:`InputError` into a :class:`~emseg_tutorial.data.errors.VolumeError` naming the file).

    Examples
    --------
    >>> check_image(np.zeros((4, 5))).shape
    (1, 4, 5)
    >>> check_image(np.array([[np.nan]]), "img.tif")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: img.tif: 1 values are NaN or infinite
    """
    data = check_volume_array(data, name)
    check_real_dtype(data, name)
    check_finite(data, name)
    return data[None] if data.ndim == 2 else data


def check_pair(image: np.ndarray, labels: np.ndarray, image_name: str = "image",
               labels_name: str = "labels") -> None:
    """Raise :class:`InputError` unless ``image`` and ``labels`` have the same shape (names both).

    Examples
    --------
    >>> check_pair(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)), "img.tif", "lab.tif")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: lab.tif: shape (1, 2, 3) does not match img.tif's shape (1, 2, 2) (they must have the same shape)
    """
    check_same_shape(image, labels, image_name, labels_name)
