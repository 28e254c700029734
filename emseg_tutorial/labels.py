"""Label codes shared by files, the command line, losses and metrics.

The codes are the paper's: ``0`` unlabelled (ignored), ``1`` boundary, ``2`` cytoplasm,
``3`` mitochondria, ``4`` glia. The boundary task keeps ``1`` for boundary and maps every
other labelled class to ``2`` (non-boundary). Inside networks a class *index* is
``code - 1``, so index ``-1`` (code 0) is the ignore value.

Examples
--------
>>> import numpy as np
>>> to_boundary_task(np.array([0, 1, 2, 3, 4], dtype=np.uint8))
array([0, 1, 2, 2, 2], dtype=uint8)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._validate import InputError, check_finite, check_volume_array

UNLABELLED = 0
BOUNDARY = 1
CYTOPLASM = 2
MITOCHONDRIA = 3
GLIA = 4
NON_BOUNDARY = 2
#: The largest label code (glia).
MAX_CODE = GLIA

#: Class names by code for the 4-class task (Experiment 1).
MULTICLASS_NAMES: dict[int, str] = {
    BOUNDARY: "boundary",
    CYTOPLASM: "cytoplasm",
    MITOCHONDRIA: "mitochondria",
    GLIA: "glia",
}
#: Class names by code for the boundary task (Experiments 2 and 3).
BOUNDARY_NAMES: dict[int, str] = {BOUNDARY: "boundary", NON_BOUNDARY: "non-boundary"}

TASKS = ("multiclass", "boundary")


def check_codes(labels: npt.ArrayLike, name: str = "labels", *, max_code: int = MAX_CODE) -> np.ndarray:
    """``labels`` as uint8 codes ``0..max_code`` after checking; the one label check of the library.

    Readers, trainers, weight maps and metrics all call it, so every one of them accepts and
    rejects the same inputs: a 2D or 3D non-empty array of whole numbers (integer dtype, or
    floats without a fraction, as some tools write labels) in ``0..max_code``, with at least
    one labelled (non-zero) pixel.

    Raises
    ------
    InputError
        Naming ``name`` and what is wrong.

    Examples
    --------
    >>> check_codes(np.array([[0, 1], [2.0, 4]])).dtype
    dtype('uint8')
    >>> check_codes(np.array([[5, 1]]))
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: labels: codes must be 0-4 (0 unlabelled, 1 boundary, 2 cytoplasm, 3 mitochondria, 4 glia); found 5
    """
    labels = check_volume_array(labels, name)
    kind = labels.dtype.kind
    if kind not in "iuf":
        raise InputError(f"{name}: label codes must be whole numbers (an integer array), got dtype {labels.dtype}")
    if kind == "f":
        check_finite(labels, name)
        if not np.array_equal(labels, np.round(labels)):
            raise InputError(f"{name}: label codes must be whole numbers, got non-integer values")
    lo, hi = labels.min(), labels.max()
    if lo < 0 or hi > max_code:
        bad = np.unique(labels[(labels < 0) | (labels > max_code)])
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise InputError(f"{name}: codes must be 0-{max_code} (0 unlabelled, 1 boundary, 2 cytoplasm, "
                         f"3 mitochondria, 4 glia); found {shown}")
    if hi == 0:
        raise InputError(f"{name}: every pixel is 0 (unlabelled); nothing to train or evaluate on")
    return labels.astype(np.uint8, copy=False)


def check_labels(data: npt.ArrayLike, name: str = "labels", max_code: int = MAX_CODE) -> np.ndarray:
    """``data`` as ``(Z, Y, X)`` uint8 label codes after :func:`check_codes`; a 2D array becomes ``(1, Y, X)``.

    The label check of the trainers, the adaptation loop and the readers (which turn its
    :class:`~emseg_tutorial._validate.InputError` into a :class:`~emseg_tutorial.data.errors.VolumeError`
    naming the file).

    Examples
    --------
    >>> check_labels(np.array([[0, 1], [2, 4]])).shape
    (1, 2, 2)
    >>> check_labels(np.array([[5]]))
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: labels: codes must be 0-4 (0 unlabelled, 1 boundary, 2 cytoplasm, 3 mitochondria, 4 glia); found 5
    """
    codes = check_codes(data, name, max_code=max_code)
    return codes[None] if codes.ndim == 2 else codes


def class_names(task: str) -> dict[int, str]:
    """Return ``{code: name}`` for ``task`` (``"multiclass"`` or ``"boundary"``)."""
    if task == "multiclass":
        return dict(MULTICLASS_NAMES)
    if task == "boundary":
        return dict(BOUNDARY_NAMES)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def num_classes(task: str) -> int:
    """Number of classes the network predicts for ``task``."""
    return len(class_names(task))


def to_boundary_task(labels: np.ndarray) -> np.ndarray:
    """Map 4-class codes to the boundary task: 1 stays 1, 2-4 become 2, 0 stays 0."""
    labels = np.asarray(labels)
    out = labels.astype(np.uint8, copy=True)
    out[labels > BOUNDARY] = NON_BOUNDARY
    return out


def for_task(labels: np.ndarray, task: str) -> np.ndarray:
    """Return ``labels`` with codes for ``task`` (4-class labels are reduced for ``boundary``)."""
    class_names(task)  # validates the task name
    return to_boundary_task(labels) if task == "boundary" else np.asarray(labels, dtype=np.uint8)


def class_fractions(labels: np.ndarray, task: str = "multiclass") -> dict[str, float]:
    """Fraction of labelled pixels in each class of ``task`` (code 0 is left out).

    Examples
    --------
    >>> class_fractions(np.array([[1, 2], [2, 0]]), "boundary")
    {'boundary': 0.3333333333333333, 'non-boundary': 0.6666666666666666}
    """
    names = class_names(task)
    labels = for_task(labels, task)
    counts = np.bincount(labels.ravel(), minlength=max(names) + 1)
    total = counts[1:].sum()
    return {name: float(counts[code] / total) if total else 0.0 for code, name in names.items()}
