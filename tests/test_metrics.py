"""Tests for emseg_tutorial.metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error, variation_of_information

from emseg_tutorial import labels as L
from emseg_tutorial import metrics, segmentation

EVALUATE_KEYS = {
    "jaccard",
    "mean_jaccard",
    "boundary_jaccard",
    "boundary_f1",
    "boundary_precision",
    "boundary_recall",
    "adapted_rand_error",
    "voi_split",
    "voi_merge",
}


def cell_labels(shape=(3, 24, 24), seed=0) -> np.ndarray:
    """4-class labels: a grid of cells separated by 1-pixel boundaries, mito and glia inside."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    out = np.full(shape, L.CYTOPLASM, dtype=np.uint8)
    for k in range(z):
        step = 6 + k  # a different grid per slice
        out[k, ::step, :] = L.BOUNDARY
        out[k, :, ::step] = L.BOUNDARY
    interior = out == L.CYTOPLASM
    out[interior & (rng.random(shape) < 0.1)] = L.MITOCHONDRIA
    out[interior & (rng.random(shape) < 0.1)] = L.GLIA
    return out


def manual_confusion(prediction, labels, n):
    cm = np.zeros((n, n + 1), dtype=np.int64)
    for t in range(1, n + 1):
        for p in range(0, n + 1):
            column = n if p == 0 else p - 1
            cm[t - 1, column] = np.sum((labels == t) & (prediction == p))
    return cm


# ---------------------------------------------------------------- confusion / Jaccard
def test_confusion_matrix_hand_made():
    labels = np.array([[1, 1, 2], [2, 3, 0]])
    prediction = np.array([[1, 2, 2], [0, 3, 1]])
    expected = np.array(
        [
            [1, 1, 0, 0],  # true 1: one right, one predicted 2
            [0, 1, 0, 1],  # true 2: one right, one unassigned (code 0)
            [0, 0, 1, 0],  # true 3: right; the pixel with label 0 is not counted
        ]
    )
    np.testing.assert_array_equal(metrics.confusion_matrix(prediction, labels, 3), expected)


def test_confusion_matrix_matches_manual_counts():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=(4, 17, 19)).astype(np.uint8)
    prediction = rng.integers(0, 5, size=labels.shape).astype(np.uint8)
    cm = metrics.confusion_matrix(prediction, labels, 4)
    np.testing.assert_array_equal(cm, manual_confusion(prediction, labels, 4))
    assert cm.sum() == np.count_nonzero(labels)


def test_jaccard_hand_computed():
    labels = np.array([[1, 1, 2, 2], [2, 2, 2, 0]])
    prediction = np.array([[1, 2, 2, 2], [2, 0, 1, 1]])
    # boundary: TP 1, union {0,0 0,1 1,2} = 3 -> 1/3 ; non-boundary: TP 3 (0,2 0,3 1,0),
    # true 5, predicted 4 -> 3 / (5 + 4 - 3) = 0.5
    scores = metrics.jaccard_scores(prediction, labels, "boundary")
    assert scores == pytest.approx({"boundary": 1 / 3, "non-boundary": 0.5})
    cm = metrics.confusion_matrix(prediction, labels, 2)
    np.testing.assert_allclose(metrics.jaccard_from_confusion(cm), [1 / 3, 0.5])
    assert metrics.mean_jaccard(cm) == pytest.approx((1 / 3 + 0.5) / 2)


def test_jaccard_ignores_unlabelled_pixels():
    labels = cell_labels()
    labels[:, :5] = 0
    rng = np.random.default_rng(2)
    prediction = rng.integers(1, 5, size=labels.shape).astype(np.uint8)
    other = prediction.copy()
    other[labels == 0] = rng.integers(0, 5, size=np.count_nonzero(labels == 0))
    assert not np.array_equal(other, prediction)
    for task in L.TASKS:  # a foreground task's prediction holds its own codes (predict writes them)
        task_other, task_prediction = ((L.for_task(x, task) if task in L.FOREGROUND_TASKS else x)
                                       for x in (other, prediction))
        assert metrics.jaccard_scores(task_other, labels, task) == metrics.jaccard_scores(
            task_prediction, labels, task
        )
        a = metrics.evaluate(task_other, labels, task)
        b = metrics.evaluate(task_prediction, labels, task)
        for key in ("jaccard", "mean_jaccard", "boundary_f1", "boundary_jaccard", "foreground_iou"):
            assert a.get(key) == b.get(key)


def test_jaccard_nan_for_absent_class_and_mean_skips_it():
    iou = metrics.jaccard_from_confusion([[2, 0, 1], [0, 0, 0]])
    assert iou[0] == pytest.approx(2 / 3) and math.isnan(iou[1])
    assert metrics.mean_jaccard([[2, 0, 1], [0, 0, 0]]) == pytest.approx(2 / 3)
    assert metrics.mean_jaccard([[2, 1], [0, 0]]) == pytest.approx((2 / 3 + 0) / 2)
    assert math.isnan(metrics.mean_jaccard(np.zeros((2, 3), dtype=int)))


def test_jaccard_boundary_task_reduces_four_class_codes():
    labels = np.array([[1, 2, 3, 4]], dtype=np.uint8)
    prediction = np.array([[1, 4, 2, 3]], dtype=np.uint8)
    assert metrics.jaccard_scores(prediction, labels, "boundary") == {
        "boundary": 1.0,
        "non-boundary": 1.0,
    }
    multi = metrics.jaccard_scores(prediction, labels, "multiclass")
    assert list(multi) == list(L.class_names("multiclass").values())
    assert multi["boundary"] == 1.0 and multi["cytoplasm"] == 0.0


def test_predicted_zero_is_a_miss():
    labels = np.array([[1, 2, 2, 2]])
    prediction = np.array([[1, 0, 2, 2]])
    scores = metrics.jaccard_scores(prediction, labels, "boundary")
    assert scores["non-boundary"] == pytest.approx(2 / 3)
    assert scores["boundary"] == 1.0


# ---------------------------------------------------------------- perfect prediction
@pytest.mark.parametrize("task", L.PAPER_TASKS)  # foreground tasks: tests/test_foreground.py
@pytest.mark.parametrize("per_slice", [True, False])
def test_perfect_prediction(task, per_slice):
    labels = cell_labels()
    prediction = L.for_task(labels, task)
    result = metrics.evaluate(prediction, labels, task, per_slice=per_slice)
    assert all(v == 1.0 for v in result["jaccard"].values())
    assert result["mean_jaccard"] == 1.0
    assert result["boundary_f1"] == 1.0 and result["boundary_jaccard"] == 1.0
    assert result["adapted_rand_error"] == pytest.approx(0.0, abs=1e-12)
    assert result["voi_split"] == pytest.approx(0.0, abs=1e-12)
    assert result["voi_merge"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- boundary scores
def test_boundary_tolerance_shifted_line():
    labels = np.full((2, 12, 12), 2, dtype=np.uint8)
    labels[:, :, 5] = 1
    prediction = np.full_like(labels, 2)
    prediction[:, :, 6] = 1  # one pixel to the right
    exact = metrics.boundary_scores(prediction, labels, tolerance=0)
    assert exact["boundary_f1"] < 1.0
    assert exact["boundary_f1"] == 0.0
    loose = metrics.boundary_scores(prediction, labels, tolerance=1)
    assert loose["boundary_f1"] == 1.0
    assert loose["boundary_precision"] == loose["boundary_recall"] == 1.0
    assert loose["boundary_jaccard"] == 1.0
    # two pixels away is still wrong at tolerance 1, right at 2
    prediction2 = np.full_like(labels, 2)
    prediction2[:, :, 7] = 1
    assert metrics.boundary_scores(prediction2, labels, tolerance=1)["boundary_f1"] == 0.0
    assert metrics.boundary_scores(prediction2, labels, tolerance=2)["boundary_f1"] == 1.0


def test_boundary_tolerance_stays_within_slices():
    labels = np.full((2, 6, 6), 2, dtype=np.uint8)
    labels[0, :, 2] = 1
    prediction = np.full_like(labels, 2)
    prediction[1, :, 2] = 1  # same place, other slice
    scores = metrics.boundary_scores(prediction, labels, tolerance=3)
    assert scores["boundary_f1"] == 0.0
    assert scores["boundary_precision"] == 0.0 and scores["boundary_recall"] == 0.0


def test_boundary_scores_hand_computed_and_consistent_with_jaccard():
    labels = np.array([[1, 1, 1, 2, 2, 0]])
    prediction = np.array([[1, 2, 2, 1, 2, 1]])  # last pixel unlabelled: not counted
    scores = metrics.boundary_scores(prediction, labels)
    assert scores["boundary_precision"] == pytest.approx(1 / 2)
    assert scores["boundary_recall"] == pytest.approx(1 / 3)
    assert scores["boundary_f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert scores["boundary_jaccard"] == pytest.approx(1 / 4)
    assert scores["boundary_jaccard"] == pytest.approx(
        metrics.jaccard_scores(prediction, labels, "boundary")["boundary"]
    )


def test_boundary_scores_undefined_cases():
    labels = np.full((4, 4), 2)
    none = metrics.boundary_scores(labels, labels)
    assert all(math.isnan(v) for v in none.values())
    prediction = labels.copy()
    prediction[0, 0] = 1
    some = metrics.boundary_scores(prediction, labels)
    assert some["boundary_precision"] == 0.0 and some["boundary_f1"] == 0.0
    assert math.isnan(some["boundary_recall"])


# ---------------------------------------------------------------- instances
def two_cells() -> np.ndarray:
    mask = np.zeros((6, 7), dtype=bool)
    mask[:, 3] = True
    return mask


def test_segment_from_boundary_two_cells():
    mask = two_cells()
    seg = segmentation.segment_from_boundary(mask)
    assert seg.shape == mask.shape and seg.dtype == np.int32
    assert set(np.unique(seg)) == {0, 1, 2}
    assert np.all(seg[mask] == 0)
    assert len(np.unique(seg[:, :3])) == 1 and len(np.unique(seg[:, 4:])) == 1
    prob = np.where(mask, 0.9, 0.1)
    prob[:, 2] = 0.3  # the left side is closer to the boundary
    ws = segmentation.segment_from_boundary(prob, method="watershed")
    assert set(np.unique(ws)) == {1, 2}  # every pixel assigned
    np.testing.assert_array_equal(ws[:, :3] != 0, True)
    assert np.all(ws[~mask] == seg[~mask])


def test_segment_from_boundary_diagonal_line_separates_with_4_connectivity():
    mask = np.eye(5, dtype=bool)
    assert len(np.unique(segmentation.segment_from_boundary(mask))) - 1 == 2
    assert len(np.unique(segmentation.segment_from_boundary(mask, connectivity=2))) - 1 == 1


def test_segment_from_boundary_volume_slices_independent_and_min_size():
    mask = np.zeros((3, 6, 7), dtype=bool)
    mask[:, :, 3] = True
    seg = segmentation.segment_from_boundary(mask)
    assert seg.max() == 6  # two cells per slice, unique across slices
    for z in range(3):
        assert len(set(np.unique(seg[z])) - {0}) == 2
    assert not set(np.unique(seg[0])) & set(np.unique(seg[1])) - {0}
    mask[:, :, 5] = True  # cells per slice: x 0..2 (18 px), x 4 (6 px), x 6 (6 px)
    small = segmentation.segment_from_boundary(mask, min_size=7)
    assert set(np.unique(small)) == {0, 1, 2, 3}  # one kept cell per slice
    assert np.all(small[:, :, 4] == 0) and np.all(small[:, :, 6] == 0)
    flooded = segmentation.segment_from_boundary(mask, method="watershed", min_size=7)
    assert np.all(flooded > 0)  # dropped markers are flooded by the kept cell
    assert all(len(np.unique(flooded[z])) == 1 for z in range(3))


def test_true_segmentation_from_labels():
    labels = np.array([[2, 3, 1, 4], [0, 2, 1, 2]])
    seg = segmentation.true_segmentation_from_labels(labels)
    np.testing.assert_array_equal(seg, [[1, 1, 0, 2], [0, 1, 0, 2]])


def test_instance_scores_equal_skimage_2d():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 6, size=(20, 20))
    pred = rng.integers(0, 4, size=(20, 20))
    scores = metrics.instance_scores(pred, true)
    are, prec, rec = adapted_rand_error(true, pred, ignore_labels=[0])
    split, merge = variation_of_information(true, pred, ignore_labels=[0])
    assert scores["adapted_rand_error"] == pytest.approx(are)
    assert scores["adapted_rand_precision"] == pytest.approx(prec)
    assert scores["adapted_rand_recall"] == pytest.approx(rec)
    assert scores["voi_split"] == pytest.approx(split)
    assert scores["voi_merge"] == pytest.approx(merge)
    assert 0 < are < 1 and split > 0 and merge > 0


def test_instance_scores_known_merge_case():
    true = np.array([[1, 1, 0, 2, 2]])
    merged = np.ones_like(true)
    scores = metrics.instance_scores(merged, true)
    assert scores["adapted_rand_error"] == pytest.approx(0.5)
    assert scores["voi_split"] == pytest.approx(0.0) and scores["voi_merge"] == pytest.approx(1.0)


def test_instance_scores_per_slice_mean_and_volume():
    rng = np.random.default_rng(4)
    true = rng.integers(0, 5, size=(3, 15, 15))
    pred = rng.integers(0, 3, size=(3, 15, 15))
    true[1] = 0  # nothing to score in slice 1: skipped
    per_slice = metrics.instance_scores(pred, true)
    expected = np.mean(
        [adapted_rand_error(true[z], pred[z], ignore_labels=[0])[0] for z in (0, 2)]
    )
    assert per_slice["adapted_rand_error"] == pytest.approx(expected)
    expected_split = np.mean(
        [variation_of_information(true[z], pred[z], ignore_labels=[0])[0] for z in (0, 2)]
    )
    assert per_slice["voi_split"] == pytest.approx(expected_split)
    volume = metrics.instance_scores(pred, true, per_slice=False)
    assert volume["adapted_rand_error"] == pytest.approx(
        adapted_rand_error(true, pred, ignore_labels=[0])[0]
    )
    everything_ignored = metrics.instance_scores(pred, np.zeros_like(true))
    assert all(math.isnan(v) for v in everything_ignored.values())


# ---------------------------------------------------------------- evaluate
@pytest.mark.parametrize("task", L.PAPER_TASKS)  # foreground tasks: tests/test_foreground.py
def test_evaluate_keys_and_json(task):
    labels = cell_labels()
    labels[:, -3:] = 0
    rng = np.random.default_rng(5)
    prediction = L.for_task(labels, task).copy()
    flip = rng.random(labels.shape) < 0.1
    prediction[flip] = rng.integers(1, L.num_classes(task) + 1, size=flip.sum())
    result = metrics.evaluate(prediction, labels, task, tolerance=1)
    assert EVALUATE_KEYS <= set(result)
    assert set(result["jaccard"]) == set(L.class_names(task).values())
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    for key in EVALUATE_KEYS - {"jaccard"}:
        assert type(result[key]) is float, key
        assert 0.0 <= result[key] <= (1.0 if "voi" not in key else 20.0)
    assert result["mean_jaccard"] < 1.0
    assert result["n_labelled"] == int(np.count_nonzero(labels))


def test_evaluate_nan_becomes_none():
    labels = np.array([[2, 1, 2, 2]], dtype=np.uint8)  # no mitochondria, no glia
    result = metrics.evaluate(labels, labels, "multiclass")
    assert result["jaccard"]["glia"] is None and result["jaccard"]["mitochondria"] is None
    assert result["mean_jaccard"] == 1.0
    json.dumps(result, allow_nan=False)
    walls = np.ones_like(labels)  # all boundary: no non-boundary class, no true cell to score
    empty = metrics.evaluate(walls, walls, "boundary")
    assert empty["jaccard"]["non-boundary"] is None and empty["adapted_rand_error"] is None
    assert empty["mean_jaccard"] == 1.0
    json.dumps(empty, allow_nan=False)
    # labels with no labelled pixel at all are refused (labels.check_codes): nothing to score
    with pytest.raises(ValueError, match="labels: every pixel is 0"):
        metrics.evaluate(labels, np.zeros_like(labels), "boundary")


def test_evaluate_with_probabilities_grows_cells_from_them():
    labels = cell_labels(shape=(2, 18, 18))
    boundary_prob = np.where(labels == 1, 0.9, 0.1)
    prediction = L.for_task(labels, "boundary")
    for probabilities in (boundary_prob, np.stack([boundary_prob, 1 - boundary_prob])):
        result = metrics.evaluate(prediction, labels, "boundary", probabilities=probabilities)
        assert result["segmentation"] == "cells grown from the boundary probability"
        assert result["adapted_rand_error"] == pytest.approx(0.0, abs=1e-12)
        assert result["voi_merge"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- bad input
GOOD = np.ones((4, 5), dtype=np.uint8)

BAD_CALLS = {
    "shape mismatch": (
        lambda: metrics.evaluate(GOOD, np.ones((4, 6), np.uint8), "boundary"),
        r"labels: shape \(4, 6\) does not match prediction's shape \(4, 5\)",
    ),
    "prediction code out of range": (
        lambda: metrics.evaluate(GOOD * 7, GOOD, "multiclass"),
        r"prediction: codes must be 0-4 .*found 7",
    ),
    "label code out of range": (
        lambda: metrics.confusion_matrix(GOOD, GOOD * 3, 2),
        r"labels: codes must be 0-2 .*found 3",
    ),
    "negative code": (
        lambda: metrics.jaccard_scores(GOOD.astype(int) - 2, GOOD, "boundary"),
        r"prediction: codes must be 0-4 .*found -1",
    ),
    "wrong ndim 1D": (
        lambda: metrics.evaluate(np.ones(5, np.uint8), np.ones(5, np.uint8), "boundary"),
        r"prediction: expected a 2D \(Y, X\) or 3D \(Z, Y, X\) array, got 1D",
    ),
    "wrong ndim 4D": (
        lambda: metrics.boundary_scores(np.ones((1, 2, 3, 4), np.uint8), GOOD),
        r"got 4D",
    ),
    "unknown task": (
        lambda: metrics.evaluate(GOOD, GOOD, "semantic"),
        r"unknown task 'semantic'",
    ),
    "fractional float predictions": (
        lambda: metrics.evaluate(GOOD + 0.5, GOOD, "boundary"),
        r"prediction: label codes must be whole numbers, got non-integer values",
    ),
    "all-zero prediction": (
        lambda: metrics.jaccard_scores(GOOD * 0, GOOD, "boundary"),
        r"prediction: every pixel is 0",
    ),
    "negative tolerance": (
        lambda: metrics.boundary_scores(GOOD, GOOD, tolerance=-1),
        r"tolerance must be .*>= 0",
    ),
    "bad n_classes": (
        lambda: metrics.confusion_matrix(GOOD, GOOD, 0),
        r"n_classes must be a positive integer",
    ),
    "bad confusion shape": (
        lambda: metrics.jaccard_from_confusion(np.ones((2, 4))),
        r"shape \(n, n\) or \(n, n \+ 1\), got \(2, 4\)",
    ),
    "unknown segmentation method": (
        lambda: segmentation.segment_from_boundary(GOOD.astype(bool), method="graphcut"),
        r"method must be one of .*'graphcut'",
    ),
    "probability out of range": (
        lambda: segmentation.segment_from_boundary(np.full((4, 5), 1.5)),
        r"within \[0, 1\]",
    ),
    "codes given as boundary map": (
        lambda: segmentation.segment_from_boundary(GOOD * 3),
        r"0/1 mask.*codes == 1",
    ),
    "float instance labels": (
        lambda: metrics.instance_scores(GOOD.astype(float), GOOD),
        r"pred_segmentation must hold integer instance labels",
    ),
    "instance shape mismatch": (
        lambda: metrics.instance_scores(GOOD, np.ones((5, 4), np.uint8)),
        r"same shape",
    ),
    "probabilities wrong shape": (
        lambda: metrics.evaluate(GOOD, GOOD, "boundary", probabilities=np.zeros((3, 4, 5))),
        r"probabilities must have the prediction's shape",
    ),
    "bad connectivity": (
        lambda: segmentation.true_segmentation_from_labels(GOOD, connectivity=3),
        r"connectivity must be 1 .* or 2",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises_clear_value_error(case):
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_whole_number_float_codes_are_accepted():
    """Float codes without a fraction are label codes (labels.check_codes), as some tools write them."""
    labels = cell_labels(shape=(2, 12, 12))
    prediction = L.for_task(labels, "boundary")
    expected = metrics.evaluate(prediction, labels, "boundary")
    assert metrics.evaluate(prediction.astype(np.float32), labels, "boundary") == expected
    assert metrics.evaluate(prediction, labels.astype(np.float64), "boundary") == expected
    assert metrics.jaccard_scores(prediction.astype(np.float32), labels, "multiclass") == (
        metrics.jaccard_scores(prediction, labels, "multiclass"))


def _walls_widened(labels: np.ndarray) -> np.ndarray:
    """The same cells with every wall one pixel thicker (boundary dilated by one pixel)."""
    from scipy import ndimage

    wide = np.stack([ndimage.binary_dilation(z == 1) for z in labels])
    return np.where(wide, 1, 2).astype(np.uint8)


def test_instance_scores_judge_cells_not_wall_thickness():
    """Perfect walls, one pixel wider: the same cells, so ARAND and VOI stay near 0 (issue: they
    measured wall thickness when every predicted wall pixel was one more segment)."""
    labels = cell_labels(shape=(2, 64, 64))
    result = metrics.evaluate(_walls_widened(labels), L.for_task(labels, "boundary"), "boundary")
    assert result["boundary_jaccard"] < 0.7                       # the pixel score sees the thickness
    assert result["adapted_rand_error"] < 0.05 and result["voi_merge"] < 0.15


def test_instance_scores_see_a_real_merge():
    labels = L.for_task(cell_labels(shape=(1, 64, 64)), "boundary")
    merged = labels.copy()
    merged[merged == 1] = 2                                       # no walls at all: one big cell
    result = metrics.evaluate(merged, labels, "boundary")
    assert result["adapted_rand_error"] > 0.5 and result["voi_merge"] > 1.0


def test_grow_cells_stays_in_its_slice():
    seg = np.zeros((2, 1, 5), np.int32)
    seg[0, 0, 0] = 1                                              # slice 1 has no cell: stays 0
    grown = segmentation.grow_cells(seg)
    assert grown[0].tolist() == [[1, 1, 1, 1, 1]] and not grown[1].any()


@pytest.mark.parametrize("task", ["multiclass", "boundary"])
def test_pixel_scores_are_evaluates_pixel_part(task):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, (3, 20, 24)).astype(np.uint8)
    prediction = rng.integers(1, 5, (3, 20, 24)).astype(np.uint8)
    pix = metrics.pixel_scores(prediction, labels, task, tolerance=1)
    full = metrics.evaluate(prediction, labels, task, tolerance=1)
    assert pix["jaccard"] == metrics.jaccard_scores(prediction, labels, task) == full["jaccard"]
    assert pix["mean_jaccard"] == pytest.approx(full["mean_jaccard"])
    b = metrics.boundary_scores(prediction, labels, tolerance=1)
    for key in ("boundary_jaccard", "boundary_precision", "boundary_recall", "boundary_f1"):
        assert pix[key] == b[key] == full[key]
    with pytest.raises(ValueError, match="task"):
        metrics.pixel_scores(prediction, labels, "instances")
