"""One label check: every entry point that takes label codes accepts and refuses what
:func:`emseg_tutorial.labels.check_codes` does, and checks its input once.

Entry points documented to take a boolean boundary mask as well (``distance_weight_map``)
accept a bool array where ``check_codes`` refuses it; that is the one stated exception.
"""

from __future__ import annotations

import numpy as np
import pytest

from emseg_tutorial import labels as L
from emseg_tutorial import metrics, segmentation
from emseg_tutorial import weight_schemes
from emseg_tutorial import weights as W

ARRAYS = {
    "uint8 codes": np.array([[0, 1, 2], [3, 4, 2]], np.uint8),
    "int64 3D codes": np.array([[[1, 2], [2, 2]], [[0, 1], [4, 3]]], np.int64),
    "whole floats": np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 2.0]]),
    "fractional floats": np.array([[0.0, 1.5, 2.0], [3.0, 4.0, 2.0]]),
    "NaN float": np.array([[0.0, np.nan, 2.0], [3.0, 4.0, 2.0]]),
    "negative ints": np.array([[0, -1, 2], [3, 4, 2]]),
    "code 5": np.array([[0, 1, 2], [5, 4, 2]]),
    "all zeros": np.zeros((2, 3), np.uint8),
    "bool": np.array([[True, False, True], [False, True, False]]),
    "strings": np.array([["1", "2", "2"], ["2", "1", "2"]]),
    "1D": np.array([1, 2, 2]),
    "4D": np.ones((1, 1, 2, 3), np.uint8),
    "empty": np.zeros((0, 3), np.uint8),
}

ENTRY_POINTS = {
    "labels.check_codes": L.check_codes,
    "weight_schemes.weight_map(x, 'entropy')": lambda x: weight_schemes.weight_map(x, "entropy"),
    "weights.distance_weight_map": W.distance_weight_map,
    "weights.label_entropy": W.label_entropy,
    "metrics.jaccard_scores(x, x, 'multiclass')": lambda x: metrics.jaccard_scores(x, x, "multiclass"),
    "metrics.evaluate(x, x, 'multiclass')": lambda x: metrics.evaluate(x, x, "multiclass"),
}

#: Entry points documented to take a bool boundary mask (every pixel labelled) as well.
TAKES_BOOL_MASK = {"weights.distance_weight_map"}


def _outcome(fn, array):
    """``None`` when ``fn`` accepts ``array``; else the message without its ``name:`` prefix."""
    try:
        fn(array)
    except ValueError as error:
        return str(error).partition(": ")[2]
    return None


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", list(ARRAYS))
def test_every_label_check_agrees(case, entry):
    array = ARRAYS[case]
    reference = _outcome(L.check_codes, array)
    if entry in TAKES_BOOL_MASK and case == "bool":
        assert _outcome(ENTRY_POINTS[entry], array) is None  # a boundary mask, as documented
        return
    got = _outcome(ENTRY_POINTS[entry], array)  # any other exception type fails the test
    # same verdict, and the same reason (the messages differ only in the argument's name)
    assert got == reference


def test_bool_mask_exception_is_only_for_masks():
    """The functions that take label codes only (not masks) refuse bool like check_codes."""
    mask = ARRAYS["bool"]
    for name in set(ENTRY_POINTS) - TAKES_BOOL_MASK:
        with pytest.raises(ValueError, match="got dtype bool"):
            ENTRY_POINTS[name](mask)


# ------------------------------------------------------------------------------ checked once
@pytest.fixture
def count_checks(monkeypatch):
    """Replace ``check_codes`` where weights and metrics look it up by a counting wrapper."""
    calls = []
    original = L.check_codes

    def counting(*args, **kwargs):
        calls.append(kwargs.get("name", args[1] if len(args) > 1 else "labels"))
        return original(*args, **kwargs)

    monkeypatch.setattr(W, "check_codes", counting)           # weights: from .labels import
    monkeypatch.setattr(weight_schemes, "check_codes", counting)  # weight_schemes: the same
    monkeypatch.setattr(L, "check_codes", counting)           # metrics: labels.check_codes
    return calls


LAB = np.stack([np.where(np.arange(12) % 4 == 0, 1, 2)[None, :].repeat(10, 0).astype(np.uint8)] * 2)
LAB[0, :2, :3] = 0
LAB[1, 5:, 6:] = 3


@pytest.mark.parametrize("scheme", ["entropy", "distance", "distance:10", "ratio:5", "border", "none"])
def test_weight_map_checks_labels_once(count_checks, scheme):
    weight_schemes.weight_map(LAB, scheme)
    assert count_checks == ["labels"]


@pytest.mark.parametrize("call", [
    lambda: W.label_entropy(LAB),
    lambda: W.entropy_weight_map(LAB),
    lambda: W.smoothed_distance_map(LAB, 2.0),
    lambda: W.distance_weight_map(LAB, 2.0, ratio=5),
    lambda: W.ratio_weight_map(LAB, 5),
    lambda: W.border_weight_map(LAB),
    lambda: W.class_ratio(np.ones(LAB.shape), LAB),
])
def test_each_weights_function_checks_labels_once(count_checks, call):
    call()
    assert len(count_checks) == 1


@pytest.mark.parametrize("call, expected", [
    (lambda: metrics.evaluate(LAB, LAB, "multiclass", tolerance=1), ["prediction", "labels"]),
    (lambda: metrics.evaluate(LAB, LAB, "boundary", probabilities=(LAB == 1) * 0.9),
     ["prediction", "labels"]),
    (lambda: metrics.jaccard_scores(LAB, LAB, "boundary"), ["prediction", "labels"]),
    (lambda: metrics.boundary_scores(LAB, LAB), ["prediction", "labels"]),
    (lambda: metrics.confusion_matrix(LAB, LAB, 4), ["prediction", "labels"]),
    (lambda: segmentation.true_segmentation_from_labels(LAB), ["labels"]),
])
def test_metrics_check_codes_once(count_checks, call, expected):
    call()
    assert count_checks == expected
