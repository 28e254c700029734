"""Checks for the exercises of chapters 1 to 4: class shares, label entropy, ratios, Jaccard.

Each ``check_<name>`` takes the student's answer (a function or a value) and compares it with
the library's reference on small inputs, in well under a second. It prints what is right or
wrong, with a hint, and returns a :class:`~emseg_tutorial.labs.result.CheckResult` that is
true when the answer passes. It never raises on a wrong answer; a stub that is still ``None``
or still raises ``NotImplementedError`` is reported as not done yet.

Examples
--------
>>> from emseg_tutorial.labels import class_fractions
>>> r = check_class_fractions(class_fractions)
✓ class shares: ...
>>> bool(check_class_fractions(None))
… class shares: not done yet: ...
False
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

from ..labels import class_fractions
from ..metrics import confusion_matrix, jaccard_from_confusion, mean_jaccard
from ..weights import label_entropy, ratio_weight_map, smoothed_distance_map
from ._compare import (Verdict, as_number, call, close_number, compare_arrays, describe_input, fail, matches,
                       require_answer, require_function)
from .result import CheckResult

__all__ = ["check_class_fractions", "check_rarest_class", "check_label_entropy", "check_ratio_for_share",
           "check_smoothed_distance",
           "check_jaccard", "check_constant_prediction", "check_ratio_weight_map", "check_ratio_prediction"]


def exercise_check(title: str) -> Callable[[Callable[..., str]], Callable[..., CheckResult]]:
    """Turn ``fn`` (returns the success message, or stops with :func:`fail`) into a check.

    The check prints its verdict and returns the :class:`CheckResult`; a mistake inside the
    check itself (an answer of a type it cannot handle) is reported, not raised.
    """
    def wrap(fn: Callable[..., str]) -> Callable[..., CheckResult]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> CheckResult:
            try:
                with np.errstate(all="ignore"):
                    result = CheckResult(title, "passed", fn(*args, **kwargs))
            except Verdict as verdict:
                result = CheckResult(title, verdict.status, verdict.message)
            except Exception as error:  # noqa: BLE001 - never raise in a student's notebook
                result = CheckResult(title, "failed", f"could not check this answer "
                                                      f"({type(error).__name__}: {error}).")
            return result.report()
        return run
    return wrap


# --------------------------------------------------------------------------------------
# chapter 1: class shares
# --------------------------------------------------------------------------------------
_SHARE_CASES = [np.array([[0, 1, 2], [2, 3, 4]], np.uint8),                # one unlabelled pixel
                np.array([[2, 2, 1, 2], [2, 1, 3, 0]], np.uint8),          # no glia at all
                np.array([[[1, 2], [2, 2]], [[3, 2], [0, 0]]], np.uint8)]  # a 3D stack


@exercise_check("class shares")
def check_class_fractions(func: Callable[[np.ndarray], Mapping[str, float]]) -> str:
    """Check ``func(labels) -> {class name: share of the labelled pixels}`` (4-class codes).

    The reference is :func:`emseg_tutorial.labels.class_fractions`.
    """
    require_function(func)
    for labels in _SHARE_CASES:
        got = call(func, labels.copy())
        expected = class_fractions(labels)
        where = f"for labels {describe_input(labels)}"
        if not isinstance(got, Mapping):
            fail(f"{where} expected a dict {{class name: share}}, got {type(got).__name__}.")
        missing, extra = set(expected) - set(got), set(got) - set(expected)
        if missing or extra:
            codes = {k for k in extra if isinstance(k, (int, np.integer)) and not isinstance(k, bool)}
            hint = (" A class that does not occur still gets a share of 0." if missing else "")
            if codes - {0} and codes == extra:
                hint += " Use the class names as keys, not the codes 1-4."
            elif extra:
                hint += " Code 0 (unlabelled) is not a class: leave it out."
            wrong = "; ".join(part for part in (f"missing {sorted(missing)}" if missing else "",
                                                  f"unexpected {sorted(map(str, extra))}" if extra else "") if part)
            fail(f"{where} the keys should be {sorted(expected)}; {wrong}.{hint}")
        counts = {name: float((labels == code).sum()) for code, name in enumerate(expected, start=1)}
        for name, share in expected.items():
            problem = close_number(got[name], share, atol=1e-9)
            if problem is None:
                continue
            value = as_number(got[name])
            value = math.nan if value is None else value
            if math.isclose(value, counts[name]):
                hint = "return shares (counts divided by the number of labelled pixels), not counts"
            elif math.isclose(value, counts[name] / labels.size):
                hint = "divide by the number of *labelled* pixels; unlabelled ones (code 0) do not count"
            else:
                hint = "count the pixels of each code 1-4 and divide by the number of pixels with a code > 0"
            fail(f"{where} the share of {name!r} is wrong: {problem}. Hint: {hint}.")
    return ("your shares match emseg_tutorial.labels.class_fractions on three small label arrays "
            "(with unlabelled pixels, with a missing class, and a 3D stack).")


@exercise_check("rarest class")
def check_rarest_class(answer: str, labels: np.ndarray) -> str:
    """Check that ``answer`` names the class with the fewest labelled pixels in ``labels``."""
    require_answer(answer, "`rarest` to a class name")
    shares = class_fractions(labels)
    rarest = min(shares, key=shares.get)
    if isinstance(answer, (int, np.integer)) and not isinstance(answer, bool) and 1 <= answer <= len(shares):
        fail(f"{answer!r} is a class code; answer with the class's name, one of {sorted(shares)}.")
    if not isinstance(answer, str) or answer.strip().lower() not in shares:
        fail(f"expected one of the class names {sorted(shares)}, got {answer!r}.")
    answer = answer.strip().lower()
    table = ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
    if answer != rarest:
        present = {k: v for k, v in shares.items() if v > 0}
        if answer == max(shares, key=shares.get):
            hint = "that is the most common class; the rarest holds the *fewest* labelled pixels"
        elif shares[rarest] == 0 and answer == min(present, key=present.get):
            hint = ("a class with no pixel at all has share 0 and is the rarest; counting only the codes "
                    "that occur (np.unique) leaves it out")
        else:
            hint = "one class holds fewer; compare all four shares"
        fail(f"{answer!r} holds {shares[answer]:.1%} of the labelled pixels. Hint: {hint}.")
    return f"{rarest!r} is the rarest class here ({table})."


# --------------------------------------------------------------------------------------
# chapter 2: label entropy and class ratios
# --------------------------------------------------------------------------------------
def _entropy_cases() -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(7)
    mixed = rng.integers(0, 4, size=(7, 9)).astype(np.uint8)
    hole = np.full((9, 9), 2, np.uint8)
    hole[2:7, 2:7] = 0                      # the centre window holds no labelled pixel
    hole[:, 0] = 1
    return [(mixed, 5), (hole, 5), (mixed, 3)]


@exercise_check("label entropy without unlabelled pixels")
def check_label_entropy(func: Callable[[np.ndarray, int], np.ndarray]) -> str:
    """Check ``func(labels, size)``: per-pixel entropy (bits) of the labelled pixels in the window.

    The reference is ``emseg_tutorial.weights.label_entropy(labels, size, ignore_label=0)``.
    """
    require_function(func)
    for labels, size in _entropy_cases():
        expected = label_entropy(labels, size, ignore_label=0)
        got = call(func, labels.copy(), size)
        problem = compare_arrays(got, expected, atol=1e-4)
        if problem is None:
            continue
        if matches(got, label_entropy(labels, size)):
            hint = "code 0 was counted as a class; leave unlabelled pixels out of each window's histogram"
        elif matches(got, expected * math.log(2), atol=1e-4):
            hint = "entropy is measured in bits here: use log base 2, not the natural log"
        elif size != 5 and matches(got, label_entropy(labels, 5, ignore_label=0), atol=1e-4):
            hint = "use the window side `size` you are given instead of a fixed 5"
        elif np.isnan(np.asarray(got, dtype=float)).any():
            hint = "a window with no labelled pixel has entropy 0, not NaN"
        elif matches(got, np.trunc(expected)) or (np.issubdtype(np.asarray(got).dtype, np.integer)):
            hint = ("your entropies are truncated to whole numbers: the array they are written into has an "
                    "integer dtype (np.zeros_like(labels) keeps the labels' uint8); make it float")
        elif matches(got, label_entropy(labels, 2 * size + 1, ignore_label=0), atol=1e-4):
            hint = ("`size` is the window's side, so the window reaches size // 2 pixels on each side of "
                    "its centre, not `size` pixels")
        else:
            hint = ("the window is centred on the pixel and cut to the part inside the image, so "
                    "border windows hold fewer pixels; p = n_c / N with N the labelled pixels in it")
        fail(f"on labels of shape {labels.shape} with size={size}: {problem}. Hint: {hint}.")
    return ("your entropy matches weights.label_entropy(labels, size, ignore_label=0) on three small "
            "label maps (image borders, an unlabelled hole, windows of 3 and 5).")


_SHARE_TARGETS = [(0.1, 0.5), (0.1, 0.75), (0.25, 0.5), (0.2, 0.2)]


def _wall_share(fraction: float, ratio: float) -> float:
    """Walls' share of the loss, every pixel equally wrong, measured on a made-up label row."""
    labels = np.full((1, 100), 2, np.uint8)
    labels[0, :round(fraction * 100)] = 1
    w = ratio_weight_map(labels, ratio, normalize=False)
    return float(w[labels == 1].sum() / w.sum())


@exercise_check("ratio for a given share of the loss")
def check_ratio_for_share(func: Callable[[float, float], float]) -> str:
    """Check ``func(f, share) -> r``: with boundary fraction ``f`` and weight ``r`` on boundary
    pixels, the walls carry ``share`` of a weighted-mean loss (measured with
    :func:`emseg_tutorial.weights.ratio_weight_map`)."""
    require_function(func)
    for fraction, share in _SHARE_TARGETS:
        r = as_number(call(func, fraction, share))
        if r is None or not r > 0 or not math.isfinite(r):
            fail(f"for f = {fraction}, share = {share}: expected a finite ratio > 0, got {r!r}.")
        got = _wall_share(fraction, r)
        if not math.isclose(got, share, abs_tol=1e-6):
            right = share * (1 - fraction) / (fraction * (1 - share))
            if math.isclose(r, (1 - fraction) / fraction, rel_tol=1e-6):
                hint = ("that is the inverse frequency (1 - f) / f whatever the share; it gives the walls "
                        "half the loss only")
            elif math.isclose(r, 1 / right, rel_tol=1e-6):
                hint = "your ratio is upside down (1 / r): a larger share needs a larger r"
            elif math.isclose(r, share / fraction, rel_tol=1e-6):
                hint = ("the rest of the pixels weigh 1 each and count in the total too: the walls' share is "
                        "r f / (r f + 1 - f)")
            else:
                hint = "the walls' share is r f / (r f + 1 - f); set it equal to `share` and solve for r"
            fail(f"for f = {fraction}, share = {share}: with r = {r:.4g} the walls carry "
                 f"{got:.1%} of the loss, not {share:.0%}. Hint: {hint}.")
    return ("with your ratios the walls carry exactly the shares asked for, measured with "
            "weights.ratio_weight_map (e.g. f = 0.1 and half the loss: r = 9, the inverse frequency).")


#: Border modes that extend the image with its own values: all agree with the text's map
#: (the library's is ``"reflect"``; ``skimage.filters.gaussian`` uses ``"nearest"``).
_BORDER_MODES = ("reflect", "nearest", "mirror")


def _distance_cases() -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(11)
    walls = np.zeros((12, 14), bool)
    walls[:, 4:7] = True                     # a thick vertical wall
    walls[8:10, :] = True                    # a thinner horizontal one, crossing it
    spots = rng.random((9, 10)) < 0.3        # scattered wall pixels
    return [(walls, 0.0), (walls, 2.0), (spots, 1.5)]


@exercise_check("smoothed distance map")
def check_smoothed_distance(func: Callable[[np.ndarray, float], np.ndarray]) -> str:
    """Check ``func(boundary, sigma)`` (a 2D bool wall mask) against
    :func:`emseg_tutorial.weights.smoothed_distance_map`: the distance of every wall pixel to
    the nearest non-wall pixel, 0 elsewhere, smoothed by a Gaussian of ``sigma`` (``0``: none)."""
    from scipy import ndimage as ndi

    require_function(func)
    for boundary, sigma in _distance_cases():
        expected = smoothed_distance_map(boundary, sigma)
        got = call(func, boundary.copy(), sigma)
        problem = compare_arrays(got, expected, atol=1e-4)
        raw = smoothed_distance_map(boundary, 0)
        if problem is None or any(matches(got, ndi.gaussian_filter(raw.astype(float), sigma, mode=mode), atol=1e-4)
                                  for mode in _BORDER_MODES[1:]):
            continue
        inverted = ndi.distance_transform_edt(~boundary)
        if sigma > 0 and matches(got, raw, atol=1e-4):
            hint = "that is the raw distance transform: smooth it with a Gaussian of the given sigma"
        elif matches(got, inverted, atol=1e-4) or (sigma > 0 and matches(
                got, ndi.gaussian_filter(inverted, sigma), atol=1e-4)):
            hint = ("that is the distance of every non-wall pixel to the nearest wall; the paper's map "
                    "measures, on the walls, the distance to the nearest non-wall pixel "
                    "(distance_transform_edt of the wall mask itself)")
        elif sigma > 0 and matches(got, ndi.gaussian_filter(raw, sigma, mode="constant"), atol=1e-4):
            hint = ("padding the border with zeros (mode 'constant') pulls the weights down at the image "
                    "edge; extend the image with its own values (scipy's default 'reflect', 'nearest', 'mirror')")
        elif sigma > 0 and matches(got, ndi.gaussian_filter(raw, sigma, mode="wrap"), atol=1e-4):
            hint = ("mode 'wrap' joins opposite image edges, which are not neighbours; extend the image "
                    "with its own values at each edge ('reflect', 'nearest' or 'mirror')")
        elif matches(got, ndi.gaussian_filter(boundary.astype(float), sigma), atol=1e-4):
            hint = "smooth the distance transform, not the wall mask itself"
        elif sigma > 0 and any(matches(got, ndi.gaussian_filter(raw, s, mode=m), atol=1e-4)
                               for s in (sigma ** 2, math.sqrt(sigma)) for m in _BORDER_MODES):
            hint = "`sigma` is the Gaussian's standard deviation in pixels, used as it is (not squared, not its root)"
        else:
            hint = ("first the Euclidean distance transform of the wall mask, then a Gaussian of standard "
                    "deviation sigma; scipy.ndimage has a function for each")
        fail(f"on a wall mask of shape {boundary.shape} with sigma={sigma:g}: {problem}. Hint: {hint}.")
    return ("your map matches weights.smoothed_distance_map on three small wall masks (raw, "
            "sigma 2 on crossing walls, sigma 1.5 on scattered wall pixels), up to the border mode "
            "('reflect', 'nearest' and 'mirror' all pass).")


# --------------------------------------------------------------------------------------
# chapter 3: Jaccard
# --------------------------------------------------------------------------------------
_CONFUSIONS = [np.array([[1, 0, 0], [1, 0, 1]]),                 # with the "unassigned" column
               np.array([[3, 0, 3], [1, 4, 0]]),                 # unassigned pixels of a class with hits
               np.array([[5, 1, 0], [2, 7, 1], [0, 3, 4]]),      # square, three classes
               np.array([[3, 0], [0, 0]])]                       # a class absent from both


@exercise_check("Jaccard from a confusion matrix")
def check_jaccard(func: Callable[[np.ndarray], np.ndarray]) -> str:
    """Check ``func(cm) -> per-class Jaccard`` against :func:`emseg_tutorial.metrics.jaccard_from_confusion`."""
    require_function(func)
    for cm in _CONFUSIONS:
        expected = jaccard_from_confusion(cm)
        got = call(func, cm.copy())
        problem = compare_arrays(got, expected, atol=1e-9, equal_nan=True)
        if problem is None:
            continue
        n = cm.shape[0]
        tp = np.diagonal(cm[:, :n]).astype(float)
        if matches(got, tp / cm.sum(axis=1), equal_nan=True):
            hint = "that is recall, TP / (TP + FN); the union also counts false positives (the column)"
        elif matches(got, tp / cm[:, :n].sum(axis=0), equal_nan=True):
            hint = "that is precision, TP / (TP + FP); the union also counts false negatives (the row)"
        elif cm.shape[1] == n + 1 and matches(got, jaccard_from_confusion(cm[:, :n]), equal_nan=True):
            hint = ("the last column counts labelled pixels left unassigned: they are false "
                    "negatives of their true class")
        elif np.isnan(expected).any() and matches(got, np.nan_to_num(expected)):
            hint = "a class absent from both truth and prediction has an empty union: return nan, not 0"
        elif matches(got, 2 * expected / (1 + expected), equal_nan=True):
            hint = "that is the Dice score 2 TP / (2 TP + FP + FN); the Jaccard counts TP once in the union"
        elif matches(got, expected / (1 + expected), equal_nan=True):
            hint = ("row sum + column sum counts TP twice: subtract it once, so that the union is "
                    "TP + FP + FN")
        else:
            hint = ("Jaccard = TP / (TP + FP + FN): TP on the diagonal, FN the rest of the true class's row "
                    "(unassigned included), FP the rest of the predicted class's column")
        fail(f"for cm = {describe_input(cm)}: {problem}. Hint: {hint}.")
    return (f"your Jaccard matches metrics.jaccard_from_confusion on {len(_CONFUSIONS)} confusion matrices "
            "(unassigned pixels, three classes, an absent class).")


#: A number rounded to two decimals is right (half a unit of the second decimal).
_ROUNDED = 0.005 + 1e-9


@exercise_check("mean Jaccard of 'always cytoplasm'")
def check_constant_prediction(answer: float, labels: np.ndarray) -> str:
    """Check ``answer``: the mean 4-class Jaccard of predicting cytoplasm (code 2) everywhere."""
    require_answer(answer, "`always_cytoplasm` to a number")
    prediction = np.full(np.shape(labels), 2, np.uint8)
    cm = confusion_matrix(prediction, labels, 4)
    expected = mean_jaccard(cm)
    accuracy = cm[1, 1] / cm.sum()
    problem = close_number(answer, expected, atol=_ROUNDED)
    if problem is not None:
        value = as_number(answer)
        value = math.nan if value is None else value
        per_class = jaccard_from_confusion(cm)
        if math.isclose(value, accuracy, abs_tol=_ROUNDED):
            hint = ("that is the pixel accuracy (here also cytoplasm's Jaccard alone); the mean Jaccard "
                    "averages the scores of all four classes")
        elif math.isclose(value, 100 * expected, abs_tol=100 * _ROUNDED):
            hint = "give the mean Jaccard as a fraction between 0 and 1, not in percent"
        elif math.isnan(value):
            hint = ("a class absent from both the labels and the prediction scores nan; the mean leaves it "
                    "out (np.nanmean), it does not become nan itself")
        elif np.isnan(per_class).any() and math.isclose(value, float(np.nan_to_num(per_class).mean()),
                                                        abs_tol=_ROUNDED):
            hint = ("a class absent from both the labels and the prediction has no score (nan): leave it out "
                    "of the mean instead of counting it as 0")
        else:
            hint = "classes that are never predicted but present in the labels score 0"
        fail(f"{problem}. Hint: {hint}.")
    return (f"mean Jaccard {expected:.3f}, while its pixel accuracy is {accuracy:.1%}: accuracy rewards "
            "predicting the majority class, the mean Jaccard does not.")


# --------------------------------------------------------------------------------------
# chapter 4: ratio weight maps and what they do
# --------------------------------------------------------------------------------------
def _ratio_cases() -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(3)
    return [(np.array([[0, 1, 2, 2]], np.uint8), 4.0),
            (rng.integers(0, 3, size=(6, 7)).astype(np.uint8), 10.0),
            (np.full((3, 3), 2, np.uint8), 5.0)]    # no boundary at all


def _swapped_ratio(boundary: np.ndarray, ratio: float) -> np.ndarray:
    """The map with ``ratio`` on code 2 and 1 on code 1 (a common mix-up), rescaled."""
    w = np.where(boundary == 2, float(ratio), 1.0) * (boundary > 0)
    return w / w[boundary > 0].mean()


@exercise_check("ratio weight map")
def check_ratio_weight_map(func: Callable[[np.ndarray, float], np.ndarray]) -> str:
    """Check ``func(boundary, ratio)`` on 2D boundary-task codes against
    :func:`emseg_tutorial.weights.ratio_weight_map` (normalised to mean 1 over labelled pixels)."""
    require_function(func)
    for boundary, ratio in _ratio_cases():
        expected = ratio_weight_map(boundary, ratio)
        got = call(func, boundary.copy(), ratio)
        problem = compare_arrays(got, expected, atol=1e-5)
        if problem is None:
            continue
        raw = ratio_weight_map(boundary, ratio, normalize=False)
        if matches(got, raw):
            hint = "rescale the map so that its mean over the labelled pixels is 1"
        elif np.shape(got) == boundary.shape and (np.asarray(got, dtype=float)[boundary == 0] != 0).any():
            hint = "unlabelled pixels (code 0) must get weight 0"
        elif matches(got, raw / raw.mean()):
            hint = "take the mean over the labelled pixels only when rescaling (code 0 pixels are left out)"
        elif matches(got, raw / raw.sum()):
            hint = "divide by the mean over the labelled pixels, not by their sum"
        elif (boundary == 1).any() and matches(got, _swapped_ratio(boundary, ratio)):
            hint = "the weight `ratio` goes on the boundary pixels (code 1), and 1 on the rest (code 2)"
        else:
            hint = "weight `ratio` on code 1, 1 on code 2, 0 on code 0, then divide by the mean over codes 1 and 2"
        fail(f"for boundary codes {describe_input(boundary)} and ratio {ratio:g}: {problem}. Hint: {hint}.")
    return ("your map matches weights.ratio_weight_map on three small slices (with unlabelled "
            "pixels, random codes, no boundary at all).")


_DIRECTIONS = ("up", "down")


@exercise_check("what a heavier boundary weight does")
def check_ratio_prediction(answer: Mapping[str, str], table: "Any | None" = None) -> str:
    """Check a prediction ``{"recall": "up"|"down", "precision": "up"|"down"}`` for going from
    ratio 2:1 to 10:1, and say what this run's ``table`` (rows ``m2_ratio2``, ``m2_ratio10``;
    columns ``boundary_recall``, ``boundary_precision``) shows."""
    require_answer(answer, "`prediction` to a dict")
    if not isinstance(answer, Mapping) or set(answer) != {"recall", "precision"}:
        fail(f'expected a dict with the keys "recall" and "precision", got {answer!r:.80}.')
    if any(str(v).strip().lower() not in _DIRECTIONS for v in answer.values()):
        fail(f'each value should be "up" or "down", got {dict(answer)!r}.')
    said = {k: str(v).strip().lower() for k, v in answer.items()}
    run = ""
    if table is not None:
        moves = {}
        for key in ("recall", "precision"):
            before, after = (float(table.loc[row, f"boundary_{key}"]) for row in ("m2_ratio2", "m2_ratio10"))
            moves[key] = f"{key} {before:.3f} -> {after:.3f} ({'up' if after > before else 'down'})"
        run = " This run, 2:1 -> 10:1: " + ", ".join(moves.values()) + "."
    if said != {"recall": "up", "precision": "down"}:
        hint = {("up", "up"): "a heavier weight is not a free improvement: it trades one kind of error for "
                              "the other",
                ("down", "down"): "the weight changes which errors the network makes, not how many: one "
                                  "kind becomes rarer",
                ("down", "up"): "the other way round: the heavier weight punishes *missed* walls, not false ones",
                }[(said["recall"], said["precision"])]
        fail(f"not what the loss rewards. Hint: {hint}. At 10:1 a missed wall pixel costs ten times a false "
             "alarm; which kind of error will the network then avoid, and which will it accept?" + run)
    return ("missing walls became expensive, so the network calls more pixels boundary: it finds more "
            "walls (recall up) and draws more false ones (precision down)." + run
            + " A short run can deviate; the trend is what the loss rewards.")
