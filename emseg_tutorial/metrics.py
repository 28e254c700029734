"""Scores for semantic and instance segmentation of EM volumes.

Pure functions on numpy arrays, in the style of :mod:`skimage.metrics`. Inputs are 2D
``(Y, X)`` or 3D ``(Z, Y, X)`` arrays of integer class codes (see
:mod:`emseg_tutorial.labels`): ``0`` unlabelled (ignored), ``1`` boundary, ``2`` cytoplasm,
``3`` mitochondria, ``4`` glia. ``labels`` always hold these codes and are reduced to the
task's here (:func:`emseg_tutorial.labels.for_task`); a ``prediction`` holds its task's codes,
as ``predict`` writes them (the boundary task: ``1`` boundary, ``2`` non-boundary; a foreground
task such as ``mitochondria``: ``1`` the class, ``2`` the rest; for ``multiclass`` and
``boundary`` 4-class predictions are reduced too, :func:`emseg_tutorial.labels.prediction_codes`).

Four families of scores:

* **Pixel classification** -- :func:`confusion_matrix`, :func:`jaccard_from_confusion`,
  :func:`mean_jaccard`, :func:`jaccard_scores`: the paper's Jaccard score (intersection over
  union per class), counted only where the labels are not ``0``.
* **Boundary detection** -- :func:`boundary_scores`: Jaccard, precision, recall and F1 of
  the boundary class, optionally with a tolerance of a few pixels in each slice.
* **Foreground** (one blob class against the rest: ``mitochondria``, ``cytoplasm``, ``glia``)
  -- :func:`foreground_scores`: the conventions of the EM domain-adaptation literature on
  mitochondria: foreground IoU, precision, recall, F1 (= Dice), Matthews correlation and, from
  the probabilities, :func:`average_precision`.
* **Instances** -- :func:`instance_scores`: cells (cut out by the boundaries with
  :mod:`emseg_tutorial.segmentation`), or for a foreground task the connected components of
  the class in each slice, compared with the adapted Rand error and the variation of
  information of :mod:`skimage.metrics` (the SNEMI3D scores).

:func:`evaluate` runs those of the task (boundary detection or foreground, beside the other
two) and returns a JSON-ready ``dict`` (``evaluate --json``); :func:`pixel_scores` is its cheap
part (all but the instances: no cells), for validation passes and many runs; :func:`headline_key`
names the score a run of a task is ranked by.

Inputs are checked once, by the public function they enter: class codes with
:func:`emseg_tutorial.labels.check_codes` (the library's one label check: integers or
whole-number floats in ``0..4``, not all ``0``), shape pairs with
:func:`emseg_tutorial._validate.check_same_shape`. Errors are ``ValueError`` naming the
argument. :func:`evaluate` calls the private cores behind the other functions, which check
nothing.

Examples
--------
>>> import numpy as np
>>> labels = np.array([[2, 1, 2],
...                    [2, 1, 2]], dtype=np.uint8)
>>> scores = evaluate(labels, labels, "boundary")
>>> scores["mean_jaccard"], scores["boundary_f1"], scores["adapted_rand_error"]
(1.0, 1.0, 0.0)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information

from . import labels as _labels
from ._validate import check_same_shape, check_volume_array
from .segmentation import (_check_probability, _segment_from_boundary, _true_segmentation_from_labels,
                           grow_cells)

__all__ = [
    "confusion_matrix",
    "jaccard_from_confusion",
    "mean_jaccard",
    "jaccard_scores",
    "boundary_scores",
    "foreground_scores",
    "average_precision",
    "instance_scores",
    "pixel_scores",
    "evaluate",
    "headline_key",
    "check_tolerance",
    "MAX_TOLERANCE",
]


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _check_codes_pair(
    prediction: npt.ArrayLike, labels: npt.ArrayLike, max_code: int = _labels.MAX_CODE
) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays through :func:`~emseg_tutorial.labels.check_codes`, then the same shape."""
    prediction = _labels.check_codes(prediction, "prediction", max_code=max_code)
    labels = _labels.check_codes(labels, "labels", max_code=max_code)
    check_same_shape(prediction, labels, "prediction", "labels")
    return prediction, labels


def _check_instance_labels(array: npt.ArrayLike, name: str) -> np.ndarray:
    """Instance labels (cell ids, not codes): a 2D/3D non-empty array of integers >= 0."""
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        hint = ""
        if array.dtype.kind == "f":
            hint = " (cast with .astype(...) if the values are whole numbers)"
        raise ValueError(f"{name} must hold integer instance labels, got dtype {array.dtype}{hint}")
    array = check_volume_array(array, name)
    if array.min() < 0:
        raise ValueError(f"{name} must hold non-negative labels, got {int(array.min())}")
    return array


def _check_task(task: str) -> dict[int, str]:
    if not isinstance(task, str):
        raise ValueError(f"task must be one of {_labels.TASKS}, got {task!r}")
    return _labels.class_names(task)  # raises ValueError naming the valid tasks


#: largest boundary tolerance in pixels: a match farther away is no longer a boundary match, and
#: the disk footprint of a larger tolerance costs memory as its square (1e9 pixels asked for 22 GB)
MAX_TOLERANCE = 64


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` as a float after checking ``0 <= tolerance <= MAX_TOLERANCE`` pixels.

    Examples
    --------
    >>> check_tolerance(2)
    2.0
    >>> check_tolerance(1e9)
    Traceback (most recent call last):
    ...
    ValueError: tolerance must be a number of pixels >= 0 and <= 64, got 1000000000.0
    """
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, numbers.Real)
        or not math.isfinite(tolerance)
        or not 0 <= tolerance <= MAX_TOLERANCE
    ):
        raise ValueError(f"tolerance must be a number of pixels >= 0 and <= {MAX_TOLERANCE}, got {tolerance!r}")
    return float(tolerance)


_check_tolerance = check_tolerance


def _disk(radius: float, ndim: int) -> np.ndarray:
    """Euclidean disk ``dy**2 + dx**2 <= radius**2``, shaped ``(1, k, k)`` for 3D."""
    r = int(math.floor(radius))
    yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
    disk = yy**2 + xx**2 <= radius**2
    return disk if ndim == 2 else disk[np.newaxis]


def _nan_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) + 0.0 if finite else math.nan  # + 0.0: no "-0.0"


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------------------
# pixel classification
# --------------------------------------------------------------------------------------
def confusion_matrix(
    prediction: npt.ArrayLike, labels: npt.ArrayLike, n_classes: int
) -> np.ndarray:
    """Count labelled pixels by true and predicted class.

    Parameters
    ----------
    prediction : (Y, X) or (Z, Y, X) ndarray of int
        Predicted class codes in ``0..n_classes``.
    labels : ndarray of int, same shape as `prediction`
        True class codes in ``0..n_classes``; pixels with code ``0`` are not counted.
    n_classes : int
        Number of classes (codes ``1..n_classes``).

    Returns
    -------
    cm : (n_classes, n_classes + 1) ndarray of int64
        ``cm[i, j]`` counts labelled pixels of true class index ``i`` (code ``i + 1``)
        predicted as class index ``j`` (code ``j + 1``). The extra last column,
        ``cm[:, -1]``, counts labelled pixels the prediction left *unassigned* (code 0,
        i.e. class index -1, the ignore value of :mod:`emseg_tutorial.labels`).
        ``cm[:, :-1]`` is the usual square confusion matrix.

    Notes
    -----
    A prediction of code ``0`` on a labelled pixel is an error against the true class: it
    is kept in the last column so that each row sums to the number of labelled pixels of
    that class, and :func:`jaccard_from_confusion` counts it as a miss (a false negative)
    of the true class and as a hit of no class.

    The counts come from a single :func:`numpy.bincount` over the labelled pixels.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 2], [2, 0]])
    >>> prediction = np.array([[1, 1], [0, 2]])
    >>> confusion_matrix(prediction, labels, n_classes=2)
    array([[1, 0, 0],
           [1, 0, 1]])
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    n = int(n_classes)
    prediction, labels = _check_codes_pair(prediction, labels, n)
    return _confusion_matrix(prediction, labels, n)


def _confusion_matrix(prediction: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """:func:`confusion_matrix` of checked codes ``0..n`` of one shape."""
    labelled = labels != 0
    true_index = labels[labelled].astype(np.int64) - 1
    predicted = prediction[labelled].astype(np.int64)
    # code c -> column c - 1; code 0 -> column n (the "unassigned" column, index -1)
    column = np.where(predicted == 0, n, predicted - 1)
    counts = np.bincount(true_index * (n + 1) + column, minlength=n * (n + 1))
    return counts.reshape(n, n + 1)


def jaccard_from_confusion(cm: npt.ArrayLike) -> np.ndarray:
    """Per-class Jaccard index (intersection over union) from a confusion matrix.

    Parameters
    ----------
    cm : (n, n) or (n, n + 1) array_like of non-negative counts
        Rows are true classes, columns predicted classes, as returned by
        :func:`confusion_matrix`; an ``n + 1``-th column counts unassigned pixels.

    Returns
    -------
    iou : (n,) ndarray of float
        ``TP / (TP + FP + FN)`` per class; ``nan`` for a class absent from both the truth
        and the prediction (its union is empty, so the score is undefined).

    Notes
    -----
    With ``TP = cm[k, k]``, ``FN = cm[k, :].sum() - TP`` (unassigned pixels included) and
    ``FP = cm[:n, k].sum() - TP``.

    Examples
    --------
    >>> jaccard_from_confusion([[1, 0, 0],
    ...                         [1, 0, 1]])
    array([0.5, 0. ])
    >>> jaccard_from_confusion([[3, 0], [0, 0]])
    array([ 1., nan])
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] < 1 or cm.shape[1] not in (cm.shape[0], cm.shape[0] + 1):
        raise ValueError(
            f"confusion matrix must have shape (n, n) or (n, n + 1), got {cm.shape}"
        )
    if cm.dtype.kind not in "iuf" or (cm.size and cm.min() < 0):
        raise ValueError("confusion matrix must hold non-negative counts")
    return _jaccard_from_confusion(cm)


def _jaccard_from_confusion(cm: np.ndarray) -> np.ndarray:
    """:func:`jaccard_from_confusion` of a checked ``(n, n)`` or ``(n, n + 1)`` count matrix."""
    n = cm.shape[0]
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm[:, :n])
    union = cm.sum(axis=1) + cm[:, :n].sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_jaccard(cm: npt.ArrayLike) -> float:
    """Mean of :func:`jaccard_from_confusion` over the classes where it is defined.

    Parameters
    ----------
    cm : (n, n) or (n, n + 1) array_like
        Confusion matrix as returned by :func:`confusion_matrix`.

    Returns
    -------
    float
        Mean Jaccard index; classes absent from both truth and prediction (``nan``) are
        left out; ``nan`` when no class is present at all.

    Examples
    --------
    >>> mean_jaccard([[1, 0, 0], [1, 0, 1]])
    0.25
    >>> mean_jaccard([[3, 0], [0, 0]])
    1.0
    """
    return _nan_mean(list(jaccard_from_confusion(cm)))


def jaccard_scores(
    prediction: npt.ArrayLike, labels: npt.ArrayLike, task: str
) -> dict[str, float]:
    """Jaccard index per class name of ``task``, on labelled pixels.

    Parameters
    ----------
    prediction : (Y, X) or (Z, Y, X) ndarray of int
        Predicted codes of ``task`` (:func:`emseg_tutorial.labels.prediction_codes`).
    labels : ndarray of int, same shape as `prediction`
        True codes in ``0..4``; code ``0`` is ignored.
    task : str
        One of :data:`emseg_tutorial.labels.TASKS`. The labels are reduced with
        :func:`emseg_tutorial.labels.for_task` (for ``"boundary"``, 2, 3, 4 become
        non-boundary ``2``; for ``"mitochondria"``, 3 becomes ``1`` and 1, 2, 4 become ``2``).

    Returns
    -------
    dict of str to float
        ``{class name: IoU}`` in code order; ``nan`` for a class absent from both.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 2, 3, 4]])
    >>> jaccard_scores(np.array([[1, 3, 3, 4]]), labels, "boundary")
    {'boundary': 1.0, 'non-boundary': 1.0}
    >>> jaccard_scores(np.array([[1, 3, 3, 4]]), labels, "multiclass")
    {'boundary': 1.0, 'cytoplasm': 0.0, 'mitochondria': 0.5, 'glia': 1.0}
    >>> jaccard_scores(np.array([[2, 1, 1, 2]]), labels, "mitochondria")
    {'mitochondria': 0.5, 'non-mitochondria': 0.6666666666666666}
    """
    names = _check_task(task)
    prediction, labels = _check_codes_pair(prediction, labels)
    prediction, labels = _task_codes(prediction, labels, task)
    iou = _jaccard_from_confusion(_confusion_matrix(prediction, labels, len(names)))
    return {name: float(iou[code - 1]) for code, name in names.items()}


def _task_codes(prediction: np.ndarray, labels: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked codes in the codes of ``task``: the prediction as predicted, the labels reduced."""
    return _labels.prediction_codes(prediction, task), _labels.for_task(labels, task)


# --------------------------------------------------------------------------------------
# boundary detection
# --------------------------------------------------------------------------------------
def boundary_scores(
    prediction: npt.ArrayLike, labels: npt.ArrayLike, tolerance: float = 0
) -> dict[str, float]:
    """Jaccard, precision, recall and F1 of the boundary class (code 1).

    Parameters
    ----------
    prediction : (Y, X) or (Z, Y, X) ndarray of int
        Predicted codes in ``0..4`` (either task: code ``1`` is boundary in both).
    labels : ndarray of int, same shape as `prediction`
        True codes in ``0..4``; only pixels with ``labels != 0`` are scored.
    tolerance : float, optional
        Distance in pixels, within one z-slice, at which a predicted and a true boundary
        pixel still match. ``0`` (default) asks for the very same pixel.

    Returns
    -------
    dict of str to float
        ``boundary_jaccard``, ``boundary_precision``, ``boundary_recall``,
        ``boundary_f1``.

    Notes
    -----
    Both boundary masks are restricted to labelled pixels: ``P`` = predicted boundary on
    labelled pixels, ``T`` = true boundary. Precision is the fraction of ``P`` with a pixel
    of ``T`` within `tolerance` (Euclidean distance, same z-slice), recall the fraction of
    ``T`` with a pixel of ``P`` within `tolerance`; ``F1 = 2 p r / (p + r)``. The matching
    is a binary dilation with a disk footprint ``dy**2 + dx**2 <= tolerance**2`` (shape
    ``(1, k, k)`` for volumes), so slices never see each other.

    The boundary Jaccard is ``F1 / (2 - F1)``; at ``tolerance=0`` this is exactly
    ``|P & T| / |P | T|``, the boundary entry of :func:`jaccard_scores`.

    Undefined ratios are ``nan``: precision when ``P`` is empty, recall when ``T`` is
    empty, F1 and Jaccard when both are empty. When only one of them is empty, F1 and
    Jaccard are ``0``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[2, 1, 2, 2]] * 3)
    >>> shifted = np.array([[2, 2, 1, 2]] * 3)
    >>> boundary_scores(shifted, labels)["boundary_f1"]
    0.0
    >>> boundary_scores(shifted, labels, tolerance=1)["boundary_f1"]
    1.0
    """
    tolerance = _check_tolerance(tolerance)
    prediction, labels = _check_codes_pair(prediction, labels)
    return _boundary_scores(prediction, labels, tolerance)


def _boundary_scores(prediction: np.ndarray, labels: np.ndarray, tolerance: float) -> dict[str, float]:
    """:func:`boundary_scores` of checked codes of one shape and a float ``tolerance >= 0``."""
    labelled = labels != _labels.UNLABELLED
    pred_b = (prediction == _labels.BOUNDARY) & labelled
    true_b = labels == _labels.BOUNDARY
    if tolerance == 0:
        hit_pred = hit_true = pred_b & true_b
    else:
        footprint = _disk(tolerance, labels.ndim)
        hit_pred = pred_b & ndimage.binary_dilation(true_b, structure=footprint)
        hit_true = true_b & ndimage.binary_dilation(pred_b, structure=footprint)
    n_pred, n_true = int(np.count_nonzero(pred_b)), int(np.count_nonzero(true_b))
    tp_pred, tp_true = int(np.count_nonzero(hit_pred)), int(np.count_nonzero(hit_true))

    precision = tp_pred / n_pred if n_pred else math.nan
    recall = tp_true / n_true if n_true else math.nan
    if n_pred + n_true == 0:
        f1 = jaccard = math.nan
    elif tp_pred == 0 or tp_true == 0:
        f1 = jaccard = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
        if tolerance == 0:  # exact form, identical to the confusion-matrix IoU
            jaccard = tp_pred / (n_pred + n_true - tp_pred)
        else:
            jaccard = f1 / (2 - f1)
    return {
        "boundary_jaccard": float(jaccard),
        "boundary_precision": float(precision),
        "boundary_recall": float(recall),
        "boundary_f1": float(f1),
    }


# --------------------------------------------------------------------------------------
# foreground (one blob class against the rest)
# --------------------------------------------------------------------------------------
def average_precision(probability: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Average precision of a per-pixel probability against a binary truth.

    Parameters
    ----------
    probability : ndarray of float
        Probability (or any score) of the class, one per pixel; finite.
    truth : ndarray of bool, same shape
        Where the class truly is.

    Returns
    -------
    float
        ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, highest first
        (``P_n``, ``R_n``: precision and recall of the pixels scoring at least the n-th
        threshold; ``R_0 = 0``); ``nan`` when ``truth`` has no positive pixel.

    Notes
    -----
    The step-wise area under the precision-recall curve, without interpolation: the definition
    of scikit-learn's ``average_precision_score``, which the mitochondria adaptation papers
    report as "mAP" on the flattened test volume (DA-ISC's ``inference/*/scores.txt``).
    Computed with one sort of the scores (``O(N log N)``, vectorised); pixels with equal
    scores enter at one threshold.

    Examples
    --------
    >>> average_precision([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.8333333333333333
    """
    score = np.asarray(probability)
    if score.dtype.kind not in "iuf":
        raise ValueError(f"probability must hold numbers, got dtype {score.dtype}")
    truth = np.asarray(truth)
    if truth.dtype != bool:
        raise ValueError(f"truth must be a bool mask, got dtype {truth.dtype}")
    check_same_shape(score, truth, "probability", "truth")
    if score.size and not np.all(np.isfinite(score)):
        raise ValueError("probability must be finite (NaN or infinity found)")
    return _average_precision(score.ravel(), truth.ravel())


def _average_precision(score: np.ndarray, truth: np.ndarray) -> float:
    """:func:`average_precision` of checked flat arrays."""
    positives = int(np.count_nonzero(truth))
    if positives == 0:
        return math.nan
    order = np.argsort(score, kind="stable")[::-1]
    ranked, hits = score[order], truth[order]
    tp = np.cumsum(hits, dtype=np.int64)
    last = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]  # end of each tie
    tp = tp[last].astype(np.float64)
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def foreground_scores(
    prediction: npt.ArrayLike,
    labels: npt.ArrayLike,
    task: str,
    *,
    probabilities: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """Foreground IoU, precision, recall, F1, MCC (and AP) of a one-vs-rest task's class.

    Parameters
    ----------
    prediction : (Y, X) or (Z, Y, X) ndarray of int
        Predicted codes of ``task`` (``1`` the class, ``2`` the rest).
    labels : ndarray of int, same shape
        True codes in ``0..4`` (reduced to the task's); only pixels with ``labels != 0`` count.
    task : str
        A one-vs-rest task (:data:`emseg_tutorial.labels.ONE_VS_REST`), e.g. ``"mitochondria"``.
    probabilities : ndarray of float, optional
        The class's probability, shaped like ``prediction``, or one map per class with a leading
        class axis (the class first, as ``predict --probabilities`` writes it). Adds
        ``foreground_ap`` (:func:`average_precision`).

    Returns
    -------
    dict of str to float
        ``foreground_iou`` (``TP / (TP + FP + FN)``), ``foreground_precision``,
        ``foreground_recall``, ``foreground_f1`` (``2 TP / (2 TP + FP + FN)``, the Dice
        coefficient), ``foreground_mcc`` and, with ``probabilities``, ``foreground_ap``.

    Notes
    -----
    The field's conventions for mitochondria (Lucchi, Lucchi++, MitoEM): the counts are taken
    over every labelled pixel of the volume at once, not averaged over slices. The Matthews
    correlation coefficient is
    ``(TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN))`` and, as in scikit-learn,
    ``0`` when a factor of the denominator is 0. IoU, F1 and the precision / recall are ``nan``
    when undefined (no true and no predicted pixel of the class; none predicted; none true).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[3, 3, 2, 2, 1, 0]])
    >>> s = foreground_scores(np.array([[1, 2, 1, 2, 2, 1]]), labels, "mitochondria",
    ...                       probabilities=np.array([[0.9, 0.4, 0.6, 0.1, 0.2, 1.0]]))
    >>> s["foreground_iou"], s["foreground_f1"], round(s["foreground_mcc"], 4), round(s["foreground_ap"], 4)
    (0.3333333333333333, 0.5, 0.1667, 0.8333)
    """
    if task not in _labels.ONE_VS_REST:
        raise ValueError(f"task must be a one-vs-rest task {_labels.ONE_VS_REST}, got {task!r}")
    prediction, labels = _check_codes_pair(prediction, labels)
    prediction, labels = _task_codes(prediction, labels, task)
    prob = None if probabilities is None else _class_probability(probabilities, prediction.shape, 2)
    return _foreground_scores(prediction, labels, prob)


def _foreground_scores(prediction: np.ndarray, labels: np.ndarray, prob: np.ndarray | None) -> dict[str, float]:
    """:func:`foreground_scores` of checked codes of the task and a checked class probability."""
    labelled = labels != _labels.UNLABELLED
    pred = (prediction == _labels.FOREGROUND) & labelled
    true = labels == _labels.FOREGROUND
    tp = float(np.count_nonzero(pred & true))
    fp, fn = float(np.count_nonzero(pred)) - tp, float(np.count_nonzero(true)) - tp
    tn = float(np.count_nonzero(labelled)) - tp - fp - fn

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else math.nan

    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    out = {
        "foreground_iou": ratio(tp, tp + fp + fn),
        "foreground_precision": ratio(tp, tp + fp),
        "foreground_recall": ratio(tp, tp + fn),
        "foreground_f1": ratio(2 * tp, 2 * tp + fp + fn),
        "foreground_mcc": (tp * tn - fp * fn) / denominator if denominator > 0 else 0.0,
    }
    if prob is not None:
        out["foreground_ap"] = _average_precision(prob[labelled], true[labelled])
    return out


# --------------------------------------------------------------------------------------
# instances
# --------------------------------------------------------------------------------------

def instance_scores(
    pred_segmentation: npt.ArrayLike,
    true_segmentation: npt.ArrayLike,
    ignore_labels: Sequence[int] = (0,),
    *,
    per_slice: bool = True,
) -> dict[str, float]:
    """Adapted Rand error and variation of information, via :mod:`skimage.metrics`.

    Parameters
    ----------
    pred_segmentation : (Y, X) or (Z, Y, X) ndarray of int
        Predicted instance labels (non-negative).
    true_segmentation : ndarray of int, same shape
        True instance labels (non-negative).
    ignore_labels : sequence of int, optional
        Labels of the *true* segmentation that are not scored (default ``(0,)``:
        boundary and unlabelled pixels of
        :func:`~emseg_tutorial.segmentation.true_segmentation_from_labels`).
    per_slice : bool, optional
        For volumes: ``True`` (default, the paper's 2D setting) scores each z-slice and
        returns the mean over slices; ``False`` scores the volume at once (as the
        SNEMI3D challenge did). Ignored for 2D inputs.

    Returns
    -------
    dict of str to float
        ``adapted_rand_error``, ``adapted_rand_precision``, ``adapted_rand_recall``
        (from :func:`skimage.metrics.adapted_rand_error`), ``voi_split`` and
        ``voi_merge`` (from :func:`skimage.metrics.variation_of_information`, in bits).
        Each is 0 for a perfect segmentation (precision and recall: 1).

    Notes
    -----
    The true segmentation is skimage's ``image_true`` / ``image0``; ``voi_split`` is
    ``H(pred | true)`` (over-segmentation) and ``voi_merge`` is ``H(true | pred)``
    (under-segmentation). skimage ignores `ignore_labels` in the true segmentation only;
    a predicted label ``0`` is an ordinary segment. Precision and recall keep skimage's
    names: a merge (one predicted segment over several true ones) lowers
    ``adapted_rand_recall``, a split lowers ``adapted_rand_precision``.

    With `per_slice`, each score is averaged over the slices where it is defined:
    slices whose true labels are all ignored are skipped, and so is a slice whose adapted
    Rand score is ``0/0`` (e.g. only one-pixel segments). ``nan`` when no slice counts.

    Examples
    --------
    >>> import numpy as np
    >>> true = np.array([[1, 1, 0, 2, 2]])
    >>> merged = np.array([[1, 1, 1, 1, 1]])
    >>> scores = instance_scores(merged, true)
    >>> scores["adapted_rand_error"], scores["voi_split"], scores["voi_merge"]
    (0.5, 0.0, 1.0)
    """
    pred = _check_instance_labels(pred_segmentation, "pred_segmentation")
    true = _check_instance_labels(true_segmentation, "true_segmentation")
    check_same_shape(pred, true, "pred_segmentation", "true_segmentation")
    return _instance_scores(pred, true, [int(v) for v in ignore_labels], per_slice)


def _instance_scores(
    pred: np.ndarray, true: np.ndarray, ignore: list[int], per_slice: bool = True
) -> dict[str, float]:
    """:func:`instance_scores` of checked instance labels of one shape."""
    if pred.ndim == 3 and per_slice:
        pairs = list(zip(pred, true))
    else:
        pairs = [(pred, true)]

    keys = ("adapted_rand_error", "adapted_rand_precision", "adapted_rand_recall",
            "voi_split", "voi_merge")
    collected: dict[str, list[float]] = {key: [] for key in keys}
    for pred_part, true_part in pairs:
        if not np.any(~np.isin(true_part, ignore)):
            continue  # nothing to score in this slice
        with np.errstate(divide="ignore", invalid="ignore"):
            are, precision, recall = adapted_rand_error(
                true_part, pred_part, ignore_labels=ignore
            )
            split, merge = variation_of_information(true_part, pred_part, ignore_labels=ignore)
        for key, value in zip(keys, (are, precision, recall, split, merge)):
            collected[key].append(float(value))
    return {key: _nan_mean(values) for key, values in collected.items()}


# --------------------------------------------------------------------------------------
# everything at once
# --------------------------------------------------------------------------------------
def _class_probability(
    probabilities: npt.ArrayLike, shape: tuple[int, ...], n_classes: int
) -> np.ndarray:
    """The probability of code ``1`` (the boundary, or a foreground task's class), checked."""
    prob = np.asarray(probabilities)
    if prob.dtype.kind != "f":
        raise ValueError(f"probabilities must be floats in [0, 1], got dtype {prob.dtype}")
    if prob.shape == shape:
        pass
    elif prob.shape == (n_classes, *shape):
        prob = prob[_labels.BOUNDARY - 1]
    else:
        raise ValueError(
            f"probabilities must have the prediction's shape {shape} (the probability of code 1) "
            f"or {(n_classes, *shape)} (one map per class, code 1 first), got {prob.shape}"
        )
    _check_probability(prob)
    return prob


def pixel_scores(
    prediction: npt.ArrayLike, labels: npt.ArrayLike, task: str, *, tolerance: float = 0
) -> dict[str, Any]:
    """The pixel scores of :func:`evaluate` alone: Jaccard per class and their mean, and the
    boundary scores; no cells, so cheap enough for a validation pass or many runs.

    Parameters
    ----------
    prediction, labels, task, tolerance
        As for :func:`evaluate`.

    Returns
    -------
    dict
        ``jaccard`` (``{class name: IoU}``, ``nan`` for a class absent from both),
        ``mean_jaccard`` (over the classes present; ``nan`` if none), ``boundary_jaccard``,
        ``boundary_precision``, ``boundary_recall`` and ``boundary_f1``; plain floats. For a
        foreground task the boundary entries are ``nan`` (a blob class has no walls) and the
        :func:`foreground_scores` are added.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[2, 1, 3, 1, 2]], dtype=np.uint8)
    >>> s = pixel_scores(np.array([[2, 1, 2, 2, 2]], dtype=np.uint8), labels, "boundary")
    >>> s["jaccard"], s["boundary_recall"]
    ({'boundary': 0.5, 'non-boundary': 0.75}, 0.5)
    >>> pixel_scores(np.array([[2, 2, 1, 2, 2]], dtype=np.uint8), labels, "mitochondria")["foreground_f1"]
    1.0
    """
    names = _check_task(task)
    tolerance = _check_tolerance(tolerance)
    prediction, labels = _check_codes_pair(prediction, labels)
    return _pixel_scores(prediction, labels, names, task, tolerance)[0]


#: the boundary entries of :func:`pixel_scores`, ``nan`` for a foreground task
BOUNDARY_KEYS = ("boundary_jaccard", "boundary_precision", "boundary_recall", "boundary_f1")


def headline_key(task: str) -> str:
    """The score a run of ``task`` is ranked by: ``boundary_jaccard`` (the paper's), or a
    foreground task's ``foreground_iou`` (the field's for mitochondria).

    Examples
    --------
    >>> headline_key("boundary"), headline_key("mitochondria")
    ('boundary_jaccard', 'foreground_iou')
    """
    return "foreground_iou" if _labels.is_foreground_task(task) else "boundary_jaccard"


def _pixel_scores(prediction: np.ndarray, labels: np.ndarray, names: dict[int, str], task: str,
                  tolerance: float, prob: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`pixel_scores` on checked inputs (``prob``: a checked class probability, for the
    foreground AP); also returns the confusion matrix."""
    pred_codes, true_codes = _task_codes(prediction, labels, task)
    cm = _confusion_matrix(pred_codes, true_codes, len(names))
    iou = _jaccard_from_confusion(cm)
    out: dict[str, Any] = {
        "jaccard": {name: float(iou[code - 1]) for code, name in names.items()},
        "mean_jaccard": _nan_mean(list(iou)),
    }
    if _labels.is_foreground_task(task):
        out.update(dict.fromkeys(BOUNDARY_KEYS, math.nan))
        out.update(_foreground_scores(pred_codes, true_codes, prob))
    else:  # code 1 is the boundary in the 4-class and the boundary codes alike
        out.update(_boundary_scores(prediction, labels, tolerance))
    return out, cm


def evaluate(
    prediction: npt.ArrayLike,
    labels: npt.ArrayLike,
    task: str,
    *,
    tolerance: float = 0,
    probabilities: npt.ArrayLike | None = None,
    per_slice: bool = True,
) -> dict[str, Any]:
    """All scores of a predicted code volume against labels, ready for ``json.dumps``.

    Parameters
    ----------
    prediction : (Y, X) or (Z, Y, X) ndarray of int
        Predicted codes of ``task`` (:func:`emseg_tutorial.labels.prediction_codes`).
    labels : ndarray of int, same shape
        True codes in ``0..4``; code ``0`` is ignored.
    task : str
        One of :data:`emseg_tutorial.labels.TASKS`: which classes the Jaccard scores are
        reported for (see :func:`jaccard_scores`).
    tolerance : float, optional
        Boundary matching tolerance in pixels, see :func:`boundary_scores`.
    probabilities : ndarray of float, optional
        Probability of code 1 (the boundary, or a foreground task's class), shaped like
        `prediction`, or one map per class with a leading class axis (code 1 first). When
        given, predicted cells are the connected regions where it is below 0.5 (a foreground
        task: its instances those where it is at least 0.5) and a foreground task adds its
        average precision; otherwise they come from ``prediction``.
    per_slice : bool, optional
        Instance scores per slice (default) or on the whole volume, see
        :func:`instance_scores`.

    Returns
    -------
    dict
        ``task``; ``jaccard`` (``{class name: IoU}``); ``mean_jaccard``;
        ``boundary_jaccard``, ``boundary_precision``, ``boundary_recall``, ``boundary_f1``;
        ``adapted_rand_error``, ``adapted_rand_precision``, ``adapted_rand_recall``,
        ``voi_split``, ``voi_merge``; ``tolerance``, ``segmentation`` (the method used),
        ``per_slice`` and ``n_labelled`` (scored pixels). A foreground task adds the
        :func:`foreground_scores` (``foreground_iou``, ``foreground_f1``, ``foreground_mcc``,
        ..., ``foreground_ap`` with ``probabilities``) and has ``None`` boundary scores.

    Notes
    -----
    Every number is a plain Python ``float`` (``int`` for ``n_labelled``); an undefined
    score (``nan`` in the functions above: a class absent from truth and prediction, no
    boundary at all, no scorable slice) becomes ``None``, so
    ``json.dumps(result, allow_nan=False)`` works and prints ``null``.

    For both tasks the boundary and instance scores use code ``1`` of the prediction and
    the labels; true cells come from
    :func:`~emseg_tutorial.segmentation.true_segmentation_from_labels`. The instance
    scores (ARAND, VOI) measure *cells*: before them, every wall pixel of the prediction and
    of the truth is given to its nearest cell
    (:func:`~emseg_tutorial.segmentation.grow_cells`), by the same rule on both sides, and
    only unlabelled pixels are ignored. So walls that are
    one pixel thicker than the labels but separate the same cells score near 0, and a missing
    wall that merges two cells scores high, whatever the walls' thickness.

    A foreground task has no walls and no cells: its instances are the connected components of
    the class in each slice (4-connected), in the prediction and in the truth, and the truth's
    other pixels are ignored. The instance scores then measure how the objects are split,
    merged or missed (a missed mitochondrion joins the predicted background, a merge); pixels
    wrongly called the class outside every true object are counted by the foreground scores.

    Examples
    --------
    >>> import json
    >>> import numpy as np
    >>> labels = np.array([[2, 1, 3, 1, 2]], dtype=np.uint8)
    >>> prediction = np.array([[2, 1, 2, 2, 2]], dtype=np.uint8)
    >>> result = evaluate(prediction, labels, "multiclass")
    >>> result["jaccard"]
    {'boundary': 0.5, 'cytoplasm': 0.5, 'mitochondria': 0.0, 'glia': None}
    >>> result["boundary_recall"], result["voi_split"]
    (0.5, 0.0)
    >>> json.loads(json.dumps(result, allow_nan=False))["jaccard"]["glia"] is None
    True
    >>> mito = evaluate(np.array([[1, 1, 2, 2, 1, 1]], dtype=np.uint8),
    ...                 np.array([[3, 3, 1, 2, 3, 3]], dtype=np.uint8), "mitochondria")
    >>> mito["foreground_iou"], mito["boundary_f1"], mito["adapted_rand_error"]
    (1.0, None, 0.0)
    """
    names = _check_task(task)
    tolerance = _check_tolerance(tolerance)
    prediction, labels = _check_codes_pair(prediction, labels)
    if probabilities is not None:
        prob = _class_probability(probabilities, prediction.shape, len(names))

    else:
        prob = None

    # from here on the inputs are checked: the private cores, no second check
    pixels, cm = _pixel_scores(prediction, labels, names, task, tolerance, prob)
    if _labels.is_foreground_task(task):
        method, instances = _object_scores(prediction, labels, task, prob, per_slice)
    else:
        method, instances = _cell_scores(prediction, labels, prob, per_slice)

    result: dict[str, Any] = {
        "task": task,
        "jaccard": {name: _json_float(v) for name, v in pixels.pop("jaccard").items()},
    }
    result.update({key: _json_float(value) for key, value in pixels.items()})
    result.update({key: _json_float(value) for key, value in instances.items()})
    result.update(
        tolerance=tolerance,
        segmentation=method,
        per_slice=bool(per_slice),
        n_labelled=int(cm.sum()),
    )
    return result


def _cell_scores(prediction: np.ndarray, labels: np.ndarray, prob: np.ndarray | None,
                 per_slice: bool) -> tuple[str, dict[str, float]]:
    """Instance scores of cells (multiclass and boundary tasks) and how the cells were made.

    Instance scores judge cells, not walls: every wall pixel is given to a cell first, in the
    prediction and in the truth alike; only unlabelled pixels (code 0) are left out.
    """
    true_cells = grow_cells(_true_segmentation_from_labels(labels))
    true_cells[labels == _labels.UNLABELLED] = 0
    if prob is None:
        method = "cells grown from the predicted codes"
        mask = prediction == _labels.BOUNDARY
    else:
        method = "cells grown from the boundary probability"
        mask = prob >= 0.5
    pred_cells = grow_cells(_segment_from_boundary(mask, mask, "components", 0, 1))
    return method, _instance_scores(pred_cells, true_cells, [0], per_slice)


def _object_scores(prediction: np.ndarray, labels: np.ndarray, task: str, prob: np.ndarray | None,
                   per_slice: bool) -> tuple[str, dict[str, float]]:
    """Instance scores of a foreground task's objects (connected components of the class in each
    slice; every other true pixel ignored) and how they were made."""
    true = _labels.for_task(labels, task) != _labels.FOREGROUND
    if prob is None:
        method = f"connected components of the predicted {task} in each slice"
        pred = _labels.prediction_codes(prediction, task) != _labels.FOREGROUND
    else:
        method = f"connected components of the {task} probability >= 0.5 in each slice"
        pred = prob < 0.5
    # components of the class: the "cells" of its complement, as segment_from_boundary cuts them
    objects = [_segment_from_boundary(mask, mask, "components", 0, 1) for mask in (pred, true)]
    return method, _instance_scores(*objects, [0], per_slice)
