"""The command line's train -> predict -> evaluate chain on a tiny volume, and its error paths."""

import json

import numpy as np
import pytest
import tifffile
import torch

from emseg_tutorial.cli import main
from emseg_tutorial.data.readers import read_labels
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.models import UNet2d
from emseg_tutorial.store import load_checkpoint

SCORE_KEYS = {"jaccard", "mean_jaccard", "boundary_jaccard", "boundary_f1", "adapted_rand_error", "voi_split",
              "voi_merge"}


@pytest.fixture(autouse=True)
def ci_preset(monkeypatch):
    monkeypatch.setenv("EMSEG_PRESET", "ci")
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A 4 x 48 x 48 FIBSEM twin written by ``synth``."""
    folder = tmp_path_factory.mktemp("synth")
    img, lab = folder / "img.tif", folder / "lab.tif"
    assert main(["synth", "--domain", "fibsem", "--shape", "4", "48", "48", "--seed", "1",
                 "--image", str(img), "--labels", str(lab), "--quiet"]) == 0
    return img, lab


def _fails_with_one_line(argv, capsys, match=None):
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:")
    if match:
        assert match in err, err
    return err


def test_train_predict_evaluate_chain(synth, tmp_path, capsys):
    img, lab = synth
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    assert main(["train", "--image", str(img), "--labels", str(lab), "--task", "multiclass", "--weights", "entropy",
                 "--preset", "ci", "--steps", "3", "--device", "cpu", "--out", str(m1), "--quiet"]) == 0
    assert "model.pt" in capsys.readouterr().out
    assert (m1 / "model.pt").is_file() and (m1 / "history.json").is_file()
    history = json.loads((m1 / "history.json").read_text())
    assert history["train"]["step"] == [1, 2, 3] and len(history["train"]["loss"]) == 3
    model, ckpt = load_checkpoint(m1 / "model.pt")
    assert ckpt["config"]["task"] == "multiclass" and ckpt["config"]["steps"] == 3
    assert ckpt["config"]["model"] == {"depth": 3, "base_width": 8, "norm": "batch"}   # the ci preset
    assert model.head.out_channels == 4

    assert main(["train", "--image", str(img), "--labels", str(lab), "--task", "boundary", "--weights", "distance",
                 "--init", str(m1 / "model.pt"), "--steps", "2", "--device", "cpu", "--out", str(m2),
                 "--quiet"]) == 0
    boundary, ckpt2 = load_checkpoint(m2 / "model.pt")
    assert boundary.head.out_channels == 2 and ckpt2["config"]["weights"] == "distance"
    assert json.loads((m2 / "history.json").read_text())["train"]["step"] == [1, 2]
    # the encoder started from m1: 2 Adam steps of lr 1e-4 move each weight by about 2e-4 at most
    first = "encoders.0.0.weight"
    # Adam moves each weight by at most about lr per step (ci: 5e-4): the encoder came from M1.
    assert torch.allclose(boundary.state_dict()[first], model.state_dict()[first], atol=5e-3)
    assert not torch.equal(boundary.state_dict()[first], model.state_dict()[first])

    pred, prob = tmp_path / "pred.tif", tmp_path / "prob.tif"
    capsys.readouterr()
    assert main(["predict", "--model", str(m2 / "model.pt"), "--image", str(img), "--out", str(pred),
                 "--probabilities", str(prob), "--device", "cpu", "--quiet"]) == 0
    assert pred.is_file() and prob.is_file()
    codes = read_labels(pred)
    assert codes.shape == (4, 48, 48) and set(np.unique(codes)) <= {1, 2}
    probs = tifffile.imread(prob)          # an ImageJ hyperstack: (Z, C, Y, X)
    assert probs.shape == (4, 2, 48, 48) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(1) + 1, codes)

    capsys.readouterr()
    assert main(["evaluate", "--prediction", str(pred), "--labels", str(lab), "--task", "boundary", "--json"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    scores = json.loads(out)
    assert SCORE_KEYS <= set(scores)
    assert set(scores["jaccard"]) == {"boundary", "non-boundary"}
    for key in SCORE_KEYS - {"jaccard"}:
        assert scores[key] is None or np.isfinite(scores[key])

    # the human-readable form lists the same scores
    assert main(["evaluate", "--prediction", str(pred), "--labels", str(lab), "--task", "boundary"]) == 0
    text = capsys.readouterr().out
    assert "mean_jaccard" in text and "voi_merge" in text and "non-boundary" in text


def test_evaluate_perfect_prediction(synth, tmp_path, capsys):
    _, lab = synth
    assert main(["evaluate", "--prediction", str(lab), "--labels", str(lab), "--task", "multiclass", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["mean_jaccard"] == pytest.approx(1.0)
    assert scores["boundary_f1"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, synth):
    folder = tmp_path_factory.mktemp("bad")
    img, lab = synth
    labels = read_labels(lab)
    files = {"small_lab": folder / "small_lab.tif", "code7": folder / "code7.tif",
             "not_ckpt": folder / "not_a_checkpoint.pt", "pickled": folder / "pickled.pt"}
    write_volume(files["small_lab"], labels[:, :32, :32])
    bad = labels.copy()
    bad[0, 0, 0] = 7
    write_volume(files["code7"], bad)
    files["not_ckpt"].write_text("these are not the weights you are looking for\n")
    model = UNet2d(out_channels=2, depth=1, base_width=2)
    torch.save({"model": model.init_kwargs, "state": model.state_dict(), "config": {"seen": {1, 2}},
                "history": np.arange(3)}, files["pickled"])
    return files


def _train_args(img, lab, out, *extra):
    return ["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "distance",
            "--steps", "1", "--out", out, "--quiet", *extra]


@pytest.mark.parametrize(
    "case, match",
    [("shape", "does not match"), ("code7", "found 7"), ("ratio_x", "ratio:x"), ("foo", "foo"),
     ("no_out", "--out"), ("bad_task", "invalid choice"), ("out_is_file", "not a folder"),
     ("missing_image", "no such file"), ("bad_init", "not_a_checkpoint.pt")],
)
def test_train_bad_input_exits_2(case, match, synth, bad_files, tmp_path, capsys):
    img, lab = synth
    out = tmp_path / "run"
    argv = {
        "shape": _train_args(img, bad_files["small_lab"], out),
        "code7": _train_args(img, bad_files["code7"], out),
        "ratio_x": _train_args(img, lab, out, "--weights", "ratio:x"),
        "foo": _train_args(img, lab, out, "--weights", "foo"),
        "no_out": _train_args(img, lab, out)[:-3] + ["--quiet"],
        "bad_task": _train_args(img, lab, out, "--task", "instance"),
        "out_is_file": _train_args(img, lab, bad_files["not_ckpt"]),
        "missing_image": _train_args(tmp_path / "nope.tif", lab, out),
        "bad_init": _train_args(img, lab, out, "--init", bad_files["not_ckpt"]),
    }[case]
    _fails_with_one_line(argv, capsys, match)
    assert not out.exists()   # nothing written


@pytest.mark.parametrize("case, match", [("missing", "missing.pt"), ("not_ckpt", "not_a_checkpoint.pt"),
                                         ("bad_out", "unknown output format")])
def test_predict_bad_input_exits_2(case, match, synth, bad_files, tmp_path, capsys):
    img, _ = synth
    model = {"missing": tmp_path / "missing.pt", "not_ckpt": bad_files["not_ckpt"],
             "bad_out": bad_files["not_ckpt"]}[case]
    out = tmp_path / ("pred.txt" if case == "bad_out" else "pred.tif")
    _fails_with_one_line(["predict", "--model", model, "--image", img, "--out", out, "--quiet"], capsys, match)
    assert not out.exists()


def test_predict_pickled_checkpoint_is_one_line(synth, bad_files, tmp_path, capsys):
    img, _ = synth
    _fails_with_one_line(["predict", "--model", bad_files["pickled"], "--image", img, "--out",
                          tmp_path / "pred.tif", "--quiet"], capsys, "pickled.pt")


def test_predict_pickled_checkpoint_is_refused(synth, bad_files, tmp_path, capsys):
    img, _ = synth
    assert main(["predict", "--model", str(bad_files["pickled"]), "--image", str(img), "--out",
                 str(tmp_path / "pred.tif"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "pickled.pt" in err.splitlines()[0]
    assert not (tmp_path / "pred.tif").exists()


@pytest.mark.parametrize("case, match", [("shape", "does not match"), ("task", "invalid choice"),
                                         ("code7", "found 7")])
def test_evaluate_bad_input_exits_2(case, match, synth, bad_files, capsys):
    _, lab = synth
    argv = {"shape": ["--prediction", bad_files["small_lab"], "--labels", lab, "--task", "boundary"],
            "task": ["--prediction", lab, "--labels", lab, "--task", "instance"],
            "code7": ["--prediction", bad_files["code7"], "--labels", lab, "--task", "multiclass"]}[case]
    _fails_with_one_line(["evaluate", *argv, "--json"], capsys, match)
    assert capsys.readouterr().out == ""


def test_train_accepts_focal_loss(synth, tmp_path, capsys):
    img, lab = synth
    out = tmp_path / "focal"
    assert main(["train", "--image", str(img), "--labels", str(lab), "--task", "boundary", "--weights", "none",
                 "--loss", "focal", "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    _, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["config"]["loss"] == "focal"
    assert all(np.isfinite(json.loads((out / "history.json").read_text())["train"]["loss"]))
    _fails_with_one_line(["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                          "--loss", "hinge", "--steps", "1", "--out", tmp_path / "bad"], capsys)


def test_train_augment_is_a_setting_of_the_run(synth, tmp_path, capsys):
    """``--augment`` (issue 22): stored in the run's config; left out, the default flips and turns."""
    img, lab = synth
    for flag, expected in (["--augment", "all"], "all"), ([], "flips"):
        out = tmp_path / expected
        assert main(["train", "--image", str(img), "--labels", str(lab), "--task", "boundary", "--weights", "none",
                     *flag, "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
        assert load_checkpoint(out / "model.pt")[1]["config"]["augment"] == expected
    _fails_with_one_line(["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                          "--augment", "elastic", "--steps", "1", "--out", tmp_path / "bad"], capsys, "--augment")


def test_train_precision_is_a_setting_of_the_run(synth, tmp_path, capsys):
    img, lab = synth
    out = tmp_path / "fp32"
    assert main(["train", "--image", str(img), "--labels", str(lab), "--task", "boundary", "--weights", "none",
                 "--precision", "float32", "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    _, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["config"]["precision"] == "float32"
    _fails_with_one_line(["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                          "--precision", "fp8", "--steps", "1", "--out", tmp_path / "bad"], capsys)


@pytest.mark.parametrize("env, flag, expected", [("float32", None, "float32"), ("float32", "bfloat16", "bfloat16")])
def test_train_precision_and_seed_default_to_the_session(synth, tmp_path, monkeypatch, env, flag, expected):
    """``--precision`` left out is EMSEG_PRECISION (the session's), ``--seed`` left out the session's 0."""
    img, lab = synth
    monkeypatch.setenv("EMSEG_PRECISION", env)
    argv = ["train", "--image", str(img), "--labels", str(lab), "--task", "boundary", "--weights", "none",
            "--steps", "1", "--out", str(tmp_path / "run"), "--quiet"] + (["--precision", flag] if flag else [])
    assert main(argv) == 0
    _, ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["config"]["precision"] == expected and ckpt["config"]["seed"] == 0
