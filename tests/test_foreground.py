"""One-vs-rest tasks (issue 23): labels.for_task, the foreground scores, weight maps, checkpoints' tasks
and the command line's one-line errors. Tiny volumes; the trained paths use the ci preset."""

import json
import math

import numpy as np
import pytest

from emseg_tutorial import labels as L
from emseg_tutorial import metrics
from emseg_tutorial._validate import InputError
from emseg_tutorial.cli import main
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.models import UNet2d
from emseg_tutorial.store import check_task, checkpoint_task, save_checkpoint
from emseg_tutorial.weight_schemes import weight_map
from emseg_tutorial.weights import outline


# ---------------------------------------------------------------- labels.for_task
@pytest.mark.parametrize("task, expected", [
    ("boundary", [0, 1, 2, 2, 2]),
    ("cytoplasm", [0, 2, 1, 2, 2]),
    ("mitochondria", [0, 2, 2, 1, 2]),
    ("glia", [0, 2, 2, 2, 1]),
    ("multiclass", [0, 1, 2, 3, 4]),
])
def test_for_task_maps_the_class_to_1_the_rest_to_2_and_keeps_unlabelled(task, expected):
    codes = np.array([0, 1, 2, 3, 4], np.uint8)
    out = L.for_task(codes, task)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_every_class_name_is_a_task_with_its_names():
    assert L.TASKS == ("multiclass", "boundary", "cytoplasm", "mitochondria", "glia")
    assert L.class_names("mitochondria") == {1: "mitochondria", 2: "non-mitochondria"}
    assert L.class_names("boundary") == {1: "boundary", 2: "non-boundary"}
    assert [L.num_classes(t) for t in L.TASKS] == [4, 2, 2, 2, 2]
    assert L.class_code("mitochondria") == L.MITOCHONDRIA and L.FOREGROUND_TASKS == ("cytoplasm", "mitochondria", "glia")
    with pytest.raises(ValueError, match="unknown task 'mito'"):
        L.for_task(np.ones((2, 2)), "mito")


def test_for_task_on_a_volume_is_one_vectorised_mapping():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(3, 16, 16)).astype(np.uint8)
    out = L.for_task(labels, "mitochondria")
    assert ((out == 1) == (labels == 3)).all() and ((out == 0) == (labels == 0)).all()
    assert set(np.unique(out)) <= {0, 1, 2}
    np.testing.assert_array_equal(L.class_fractions(labels, "mitochondria")["mitochondria"],
                                  (labels == 3).sum() / (labels > 0).sum())


def test_a_foreground_class_absent_from_the_labels_is_one_line():
    with pytest.raises(InputError, match=r"^lab\.tif: no pixel is glia \(code 4\), so the glia task has nothing"):
        L.check_task_labels(np.array([[1, 2, 3]]), "glia", "lab.tif")
    L.check_task_labels(np.array([[1, 2]]), "boundary")  # the paper's tasks keep their own checks
    L.check_task_labels(np.array([[2, 2]]), "multiclass")


# ---------------------------------------------------------------- foreground scores
def test_average_precision_against_a_hand_computed_case():
    # ranked: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): precision 1 at recall 1/2, 2/3 at recall 1
    assert metrics.average_precision([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3)
    # ties enter at one threshold: two pixels of 0.5, one positive -> precision 1/2 at recall 1
    assert metrics.average_precision([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert metrics.average_precision([0.9, 0.1], [True, False]) == 1.0
    assert math.isnan(metrics.average_precision([0.9, 0.1], [False, False]))
    with pytest.raises(ValueError, match="truth must be a bool mask"):
        metrics.average_precision([0.1], [1])


def test_average_precision_is_the_area_under_the_step_curve_on_a_random_case():
    rng = np.random.default_rng(3)
    score = rng.random(200).round(2)  # with ties
    truth = rng.random(200) < 0.3
    thresholds = np.unique(score)[::-1]
    precision = np.array([truth[score >= t].mean() for t in thresholds])
    recall = np.array([truth[score >= t].sum() / truth.sum() for t in thresholds])
    expected = np.sum(np.diff(np.r_[0, recall]) * precision)
    assert metrics.average_precision(score, truth) == pytest.approx(expected)


def test_foreground_scores_count_labelled_pixels_only():
    labels = np.array([[3, 3, 3, 2, 2, 1, 4, 0, 0]], np.uint8)
    prediction = np.array([[1, 1, 2, 1, 2, 2, 2, 1, 2]], np.uint8)  # TP 2, FN 1, FP 1, TN 3; the 0s ignored
    s = metrics.foreground_scores(prediction, labels, "mitochondria")
    assert s["foreground_iou"] == pytest.approx(2 / 4)
    assert s["foreground_precision"] == pytest.approx(2 / 3) and s["foreground_recall"] == pytest.approx(2 / 3)
    assert s["foreground_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert s["foreground_mcc"] == pytest.approx((2 * 3 - 1 * 1) / math.sqrt(3 * 3 * 4 * 4))
    assert "foreground_ap" not in s
    # a prediction of the rest everywhere: MCC 0 as in scikit-learn, IoU 0, precision undefined
    none = metrics.foreground_scores(np.full_like(prediction, 2), labels, "mitochondria")
    assert none["foreground_mcc"] == 0.0 and none["foreground_iou"] == 0.0
    assert math.isnan(none["foreground_precision"])


def test_evaluate_of_a_foreground_task_has_the_fields_scores_and_json():
    labels = np.full((2, 12, 12), 2, np.uint8)
    labels[:, 2:6, 2:6] = 3
    labels[:, 8:11, 7:11] = 3
    labels[:, 0, :] = 1
    prediction = L.for_task(labels, "mitochondria")
    probs = np.stack([(prediction == 1) * 0.8 + 0.1, (prediction == 2) * 0.8 + 0.1]).astype(np.float32)
    result = metrics.evaluate(prediction, labels, "mitochondria", probabilities=probs)
    for key in ("foreground_iou", "foreground_f1", "foreground_mcc", "foreground_ap", "mean_jaccard"):
        assert result[key] == pytest.approx(1.0), key
    assert result["adapted_rand_error"] == pytest.approx(0.0, abs=1e-12) and result["voi_merge"] == pytest.approx(0)
    assert result["boundary_jaccard"] is None and result["task"] == "mitochondria"
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    # two objects predicted as one: the instance scores see the merge, the pixel scores a few pixels
    merged = prediction.copy()
    merged[:, 2:11, 2:11] = 1
    worse = metrics.evaluate(merged, labels, "mitochondria")
    assert worse["adapted_rand_error"] > 0.2 and worse["voi_merge"] > 0.5
    assert "objects" not in worse["segmentation"] and "connected components" in worse["segmentation"]


def test_a_four_class_prediction_for_a_foreground_task_is_refused():
    labels = np.array([[3, 2, 1]], np.uint8)
    with pytest.raises(InputError, match=r"a mitochondria prediction holds codes 0-2 .*found 3"):
        metrics.evaluate(labels, labels, "mitochondria")
    # the paper's tasks still reduce a 4-class prediction
    assert metrics.jaccard_scores(labels, labels, "boundary") == {"boundary": 1.0, "non-boundary": 1.0}


# ---------------------------------------------------------------- weight maps of a blob class
def test_weight_maps_of_a_blob_class():
    codes = np.full((1, 64, 64), 2, np.uint8)
    codes[0, 12:52, 12:52] = 1  # one mitochondrion, in the mitochondria task's codes
    rim = outline(codes == 1)
    assert rim.sum() == 4 * 40 - 4 and not rim[0, 30, 30]
    distance = weight_map(codes, "distance", "mitochondria")
    assert distance[0, 32, 12] > distance[0, 32, 32] and distance[0, 32, 12] > distance[0, 32, 0]
    entropy = weight_map(codes, "entropy", "mitochondria")
    assert entropy[0, 32, 12] > entropy[0, 32, 32] == pytest.approx(entropy[0, 32, 0])
    ratio = weight_map(codes, "ratio:4", "mitochondria")
    assert ratio[0, 32, 32] / ratio[0, 0, 0] == pytest.approx(4)
    for scheme in ("distance", "distance:5", "entropy", "ratio:4", "border", "none"):
        w = weight_map(codes, scheme, "mitochondria")
        assert w.dtype == np.float32 and (w > 0).all() and w.mean() == pytest.approx(1, rel=1e-4), scheme


def test_the_border_map_of_a_blob_class_weights_the_gap_between_two_objects():
    codes = np.full((1, 24, 40), 2, np.uint8)
    codes[0, 6:18, 4:18] = 1
    codes[0, 6:18, 21:36] = 1  # a 3-pixel gap at x 18-20
    w = weight_map(codes, "border", "mitochondria")
    assert w[0, 12, 19] > 2 * w[0, 2, 19]  # the gap outweighs the open background


# ---------------------------------------------------------------- the task a checkpoint records
def test_checkpoint_task_from_train_adapt_and_older_checkpoints(tmp_path):
    assert checkpoint_task({"config": {"task": "glia"}}) == "glia"
    assert checkpoint_task({"config": {"adapt": {"task": "mitochondria"}, "source": {"task": "boundary"}}}) == \
        "mitochondria"
    assert checkpoint_task({"model": {"out_channels": 2}, "config": {}}) == "boundary"
    path = tmp_path / "m.pt"
    save_checkpoint(path, UNet2d(out_channels=2, depth=1, base_width=2), config={"task": "mitochondria"})
    import torch

    assert check_task(torch.load(path, weights_only=True), "mitochondria") == "mitochondria"
    with pytest.raises(InputError, match=r"^m\.pt: the model was trained for the mitochondria task, not boundary"):
        check_task({"config": {"task": "mitochondria"}}, "boundary", "m.pt")


# ---------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def mito_files(tmp_path_factory):
    """A tiny source pair, its mitochondria prediction and probabilities, and a checkpoint of the task."""
    d = tmp_path_factory.mktemp("mito")
    rng = np.random.default_rng(0)
    labels = np.full((2, 32, 32), 2, np.uint8)
    labels[:, 4:12, 4:12] = 3
    labels[:, :, 20] = 1
    image = rng.normal(100, 10, labels.shape).astype(np.float32) + 40 * (labels == 3)
    write_volume(d / "img.tif", image)
    write_volume(d / "lab.tif", labels)
    write_volume(d / "nomito.tif", np.where(labels == 3, 2, labels).astype(np.uint8))
    pred = L.for_task(labels, "mitochondria")
    write_volume(d / "pred.tif", pred)
    np.save(d / "prob.npy", np.stack([pred == 1, pred == 2]).astype(np.float32) * 0.9 + 0.05)
    save_checkpoint(d / "m.pt", UNet2d(out_channels=2, depth=2, base_width=4), config={"task": "mitochondria"})
    save_checkpoint(d / "b.pt", UNet2d(out_channels=2, depth=2, base_width=4), config={"task": "boundary"})
    return d


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_cli_evaluate_json_carries_the_foreground_scores(mito_files, capsys):
    d = mito_files
    assert main(["evaluate", "--prediction", d / "pred.tif", "--labels", d / "lab.tif", "--task", "mitochondria",
                 "--probabilities", d / "prob.npy", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert {k: scores[k] for k in ("foreground_iou", "foreground_f1", "foreground_mcc", "foreground_ap")} == \
        {"foreground_iou": 1.0, "foreground_f1": 1.0, "foreground_mcc": 1.0, "foreground_ap": 1.0}
    assert main(["evaluate", "--prediction", d / "pred.tif", "--labels", d / "lab.tif", "--task", "mitochondria"]) == 0
    table = capsys.readouterr().out
    assert "foreground_iou" in table and "foreground_ap" not in table and "boundary_f1" not in table


@pytest.mark.parametrize("argv, match", [
    (["evaluate", "--prediction", "pred.tif", "--labels", "nomito.tif", "--task", "mitochondria"],
     r"nomito\.tif: no pixel is mitochondria \(code 3\)"),
    (["evaluate", "--prediction", "lab.tif", "--labels", "lab.tif", "--task", "mitochondria"],
     r"lab\.tif: a mitochondria prediction holds codes 0-2"),
    (["evaluate", "--prediction", "pred.tif", "--labels", "lab.tif", "--task", "glia"],
     r"lab\.tif: no pixel is glia \(code 4\)"),
    (["predict", "--model", "m.pt", "--image", "img.tif", "--out", "out.tif", "--task", "boundary"],
     r"m\.pt: the model was trained for the mitochondria task, not boundary"),
    (["adapt", "--model", "b.pt", "--task", "mitochondria", "--source-labels", "lab.tif", "--target-image",
      "img.tif", "--method", "adabn", "--out", "run"],
     r"b\.pt: the model was trained for the boundary task, not mitochondria"),
    (["adapt", "--model", "m.pt", "--source-labels", "nomito.tif", "--target-image", "img.tif",
      "--method", "adabn", "--out", "run"], r"nomito\.tif: no pixel is mitochondria"),
    (["train", "--image", "img.tif", "--labels", "nomito.tif", "--task", "mitochondria", "--weights", "distance",
      "--steps", "1", "--out", "run"], r"nomito\.tif: no pixel is mitochondria"),
])
def test_cli_refuses_an_absent_class_and_a_model_of_another_task_in_one_line(argv, match, mito_files, capsys,
                                                                              monkeypatch):
    monkeypatch.chdir(mito_files)
    assert main(argv) == 2
    import re

    assert re.search(match, _one_line(capsys))
    assert not (mito_files / "out.tif").exists() and not (mito_files / "run" / "model.pt").exists()
