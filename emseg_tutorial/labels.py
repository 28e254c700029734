"""Label codes shared by files, the command line, losses and metrics.

The codes are the paper's: ``0`` unlabelled (ignored), ``1`` boundary, ``2`` cytoplasm,
``3`` mitochondria, ``4`` glia. Inside networks a class *index* is ``code - 1``, so index
``-1`` (code 0) is the ignore value.

Tasks (:data:`TASKS`): ``multiclass`` keeps the four codes. Every class name is also a
*one-vs-rest* task (:data:`ONE_VS_REST`): the class becomes ``1``, every other labelled code
``2``, unlabelled stays ``0`` (:func:`for_task`). ``boundary`` is the paper's (Experiments 2 and
3: ``1`` boundary, ``2`` non-boundary); ``mitochondria``, ``cytoplasm`` and ``glia`` are the
*foreground* tasks (:data:`FOREGROUND_TASKS`), one blob class against the rest, as the EM
domain-adaptation literature scores mitochondria. Label files hold the codes ``0..4``; a
prediction is written in its task's codes (a mitochondria model writes ``1`` mitochondria,
``2`` non-mitochondria).

Examples
--------
>>> import numpy as np
>>> for_task(np.array([0, 1, 2, 3, 4], dtype=np.uint8), "boundary")
array([0, 1, 2, 2, 2], dtype=uint8)
>>> for_task(np.array([0, 1, 2, 3, 4], dtype=np.uint8), "mitochondria")
array([0, 2, 2, 1, 2], dtype=uint8)
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
#: The codes of a one-vs-rest task: its class, and the rest.
FOREGROUND, REST = 1, 2
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

#: One class against the rest: every class name of :data:`MULTICLASS_NAMES` (``--task CLASS``).
ONE_VS_REST: tuple[str, ...] = tuple(MULTICLASS_NAMES.values())
#: The one-vs-rest tasks of a blob class (not a wall): scored with the foreground conventions of
#: the field (foreground IoU, F1, MCC, average precision; :func:`emseg_tutorial.metrics.foreground_scores`).
FOREGROUND_TASKS: tuple[str, ...] = tuple(name for name in ONE_VS_REST if name != "boundary")
#: The paper's two tasks (Experiment 1; Experiments 2 and 3).
PAPER_TASKS = ("multiclass", "boundary")
#: Every task: ``multiclass`` and each one-vs-rest task.
TASKS: tuple[str, ...] = ("multiclass", *ONE_VS_REST)


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


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`, else ValueError naming them.

    Examples
    --------
    >>> check_task("mitochondria")
    'mitochondria'
    >>> check_task("mito")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'mito'; expected one of ('multiclass', 'boundary', 'cytoplasm', 'mitochondria', 'glia')
    """
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return task


def class_code(task: str) -> int:
    """The label code of a one-vs-rest task's class (``3`` for ``mitochondria``).

    Examples
    --------
    >>> class_code("mitochondria"), class_code("boundary")
    (3, 1)
    """
    if check_task(task) == "multiclass":
        raise ValueError("the multiclass task has four classes, not one against the rest")
    return next(code for code, name in MULTICLASS_NAMES.items() if name == task)


def is_foreground_task(task: str) -> bool:
    """Whether ``task`` is one blob class against the rest (:data:`FOREGROUND_TASKS`).

    Examples
    --------
    >>> is_foreground_task("mitochondria"), is_foreground_task("boundary")
    (True, False)
    """
    return check_task(task) in FOREGROUND_TASKS


def class_names(task: str) -> dict[int, str]:
    """Return ``{code: name}`` for ``task``: the four classes, or a class and ``non-<class>``.

    Examples
    --------
    >>> class_names("mitochondria")
    {1: 'mitochondria', 2: 'non-mitochondria'}
    """
    if check_task(task) == "multiclass":
        return dict(MULTICLASS_NAMES)
    if task == "boundary":
        return dict(BOUNDARY_NAMES)
    return {FOREGROUND: task, REST: f"non-{task}"}


def num_classes(task: str) -> int:
    """Number of classes the network predicts for ``task``."""
    return len(class_names(task))


def to_boundary_task(labels: np.ndarray) -> np.ndarray:
    """Map 4-class codes to the boundary task: 1 stays 1, 2-4 become 2, 0 stays 0."""
    return for_task(labels, "boundary")


def for_task(labels: np.ndarray, task: str) -> np.ndarray:
    """Return label codes ``0..4`` in the codes of ``task``.

    ``multiclass`` keeps them. A one-vs-rest task maps its class's code to ``1`` and every
    other labelled code to ``2``; ``0`` (unlabelled) stays ``0``. For ``boundary`` the mapping
    leaves boundary-task codes unchanged (1 stays 1, 2 stays 2), so it may be applied twice;
    for a foreground task it may not: ``1`` in its output is the class, ``1`` in its input a wall.

    Examples
    --------
    >>> for_task(np.array([[0, 1, 3], [4, 3, 2]]), "mitochondria")
    array([[0, 2, 1],
           [2, 1, 2]], dtype=uint8)
    """
    if check_task(task) == "multiclass":
        return np.asarray(labels, dtype=np.uint8)
    labels = np.asarray(labels)
    codes = np.where(labels == class_code(task), FOREGROUND, REST).astype(np.uint8)
    codes[labels == UNLABELLED] = UNLABELLED
    return codes


def prediction_codes(prediction: np.ndarray, task: str, name: str = "prediction") -> np.ndarray:
    """A predicted code volume in the codes of ``task``, as the metrics read it.

    ``predict`` writes a model's own codes. For ``multiclass`` and ``boundary`` a 4-class
    prediction is accepted too and reduced (:func:`for_task` leaves boundary codes as they are);
    a foreground task's prediction must already hold its codes (``1`` the class, ``2`` the rest),
    since a 4-class ``1`` (a wall) would read as the class.

    Raises
    ------
    InputError
        A foreground task's prediction with a code above 2, naming ``name``.

    Examples
    --------
    >>> prediction_codes(np.array([[1, 2, 0]]), "mitochondria").tolist()
    [[1, 2, 0]]
    >>> prediction_codes(np.array([[1, 3]]), "mitochondria", "pred.tif")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: pred.tif: a mitochondria prediction holds codes 0-2 (1 mitochondria, 2 non-mitochondria, as predict writes them); found 3 (4-class codes? pass for_task(prediction, 'mitochondria'))
    """
    if not is_foreground_task(task):
        return for_task(prediction, task)
    prediction = np.asarray(prediction)
    if prediction.size and prediction.max() > REST:
        found = ", ".join(str(int(v)) for v in np.unique(prediction[prediction > REST])[:5])
        raise InputError(f"{name}: a {task} prediction holds codes 0-2 (1 {task}, 2 non-{task}, as predict writes "
                         f"them); found {found} (4-class codes? pass for_task(prediction, {task!r}))")
    return prediction.astype(np.uint8, copy=False)


def check_task_labels(labels: np.ndarray, task: str, name: str = "labels") -> np.ndarray:
    """``labels`` (codes ``0..4``) after checking that a foreground task's class is in them.

    A volume without a single pixel of the class cannot train a model of that class nor score
    one (every foreground score would be undefined or 0), so it is refused in one line. The
    multiclass and boundary tasks keep their own checks (the trainer refuses labels of one
    class, adaptation warns of them).

    Raises
    ------
    InputError
        Naming ``name``, the class and the codes the labels do hold.

    Examples
    --------
    >>> check_task_labels(np.array([[1, 2], [2, 0]]), "mitochondria", "lab.tif")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: lab.tif: no pixel is mitochondria (code 3), so the mitochondria task has nothing to learn or score; the labels hold codes 1, 2
    """
    if is_foreground_task(task):
        code = class_code(task)
        if not (np.asarray(labels) == code).any():
            found = ", ".join(str(int(c)) for c in np.unique(labels) if c != UNLABELLED) or "0 only"
            raise InputError(f"{name}: no pixel is {task} (code {code}), so the {task} task has nothing to learn "
                             f"or score; the labels hold codes {found}")
    return labels


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
