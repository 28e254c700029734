"""One normaliser per volume: every prediction of a volume, or of a part of it (held-out slices,
every n-th slice, one slice), is standardised with the whole volume's Normalizer, so a reported
score equals ``predict`` + ``evaluate`` of the model on that volume.

The volumes here drift in brightness along z (a twin's slices scaled by a ramp), as the target
twin does: normalised on its own, a part of such a volume gives other numbers than the whole.
Each test checks that first (``_differs``), so it can fail.
"""

import json

import numpy as np
import pytest
import torch

from emseg_tutorial import metrics
from emseg_tutorial.adapt import AdaptConfig, adapt
from emseg_tutorial.adapt.adabn import adapt_batchnorm, normalised_statistics
from emseg_tutorial.adapt.diagnostics import (boundary_snapshot, epoch_report, source_boundary_prior,
                                              target_diagnostics)
from emseg_tutorial.cli import main
from emseg_tutorial.data.readers import ArrayVolume
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.data.normalize import Normalizer, normalizer_of, streaming_stats
from emseg_tutorial.data.patches import PatchSampler
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.data.volume import Volume
from emseg_tutorial.labels import BOUNDARY, for_task
from emseg_tutorial.models import UNet2d
from emseg_tutorial.paper import score, score_slices
from emseg_tutorial.predict import predict_file, predict_labels, predict_probabilities
from emseg_tutorial.presets import PRESETS
from emseg_tutorial.store import save_checkpoint
from emseg_tutorial.train import TrainConfig, split_slices, train_supervised

CPU = torch.device("cpu")


def drifting(volume: Volume, low: float = 0.45, high: float = 1.0) -> Volume:
    """``volume`` with slice ``z`` scaled by a ramp from ``low`` to ``high`` (float32 image)."""
    ramp = np.linspace(low, high, volume.shape[0], dtype=np.float32)[:, None, None]
    return Volume(volume.image.astype(np.float32) * ramp, volume.labels, volume.voxel_size, f"{volume.name}-drift")


@pytest.fixture(scope="module")
def target():
    return drifting(make_volume("snemi", (7, 48, 48), seed=1))


@pytest.fixture(scope="module")
def source():
    return drifting(make_volume("fibsem", (5, 48, 48), seed=0), 1.0, 0.5)


def _unet(seed=0):
    """A random U-Net with a sharpened head: confident enough that intensities matter."""
    torch.manual_seed(seed)
    net = UNet2d(out_channels=2, depth=2, base_width=4, norm="batch")
    with torch.no_grad():
        net.head.weight.mul_(30.0)
    return net


def _differs(model, part, whole_normalizer):
    """Guard: predicted with its own statistics, ``part`` would give other probabilities."""
    own = predict_probabilities(model, part, device=CPU)
    shared = predict_probabilities(model, part, normalizer=whole_normalizer, device=CPU)
    assert np.abs(own - shared).max() > 1e-3, "the fixture does not drift enough to test anything"


# --------------------------------------------------------------------------- the normaliser of a volume


def test_volume_normalizer_is_computed_once_and_shared_by_its_parts(target):
    vol = Volume(target.image.copy(), target.labels)
    norm = vol.normalizer
    assert vol.normalizer is norm and norm == Normalizer.from_volume(vol.image)
    part = vol.take(slice(None, None, 2))
    assert part.normalizer is norm and part.name == "volume[::2]"
    assert vol.slices(5, 7).normalizer is norm and vol.take([1, 4]).shape == (2, 48, 48)
    np.testing.assert_array_equal(vol.take([1, 4]).labels, target.labels[[1, 4]])
    assert Normalizer.from_volume(part.image) != norm  # its own would differ: drift


def test_normalizer_of_is_the_one_fallback(target):
    whole = Normalizer.from_volume(target.image)
    assert normalizer_of(target.image[5:]) == Normalizer.from_volume(target.image[5:]) != whole
    assert normalizer_of(target.image[5:], whole) is whole
    with pytest.raises(TypeError, match="normalizer must be a Normalizer"):
        predict_probabilities(_unet(), target.image, normalizer=(0.5, 0.2))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_in_memory_normalizer_equals_the_streamed_one_predict_uses(target, dtype):
    image = target.image.astype(dtype)
    whole, stream = Normalizer.from_volume(image), streaming_stats(ArrayVolume(image))
    assert whole.limits == stream.limits
    np.testing.assert_allclose(whole.stats, stream.stats, rtol=1e-12)  # both accumulate in float64


def test_part_of_a_volume_is_predicted_as_in_the_whole(target):
    model = _unet()
    whole = predict_probabilities(model, target.image, device=CPU)
    norm = target.normalizer
    _differs(model, target.image[::3], norm)
    np.testing.assert_allclose(predict_probabilities(model, target.image[::3], normalizer=norm, device=CPU),
                               whole[:, ::3], atol=1e-6)
    np.testing.assert_array_equal(predict_labels(model, target.image[4:5], normalizer=norm, device=CPU),
                                  whole[:, 4:5].argmax(0) + 1)


def test_predict_file_takes_a_known_normalizer(tmp_path, target):
    model = _unet()
    whole = predict_probabilities(model, target.image, device=CPU)
    result = predict_file(model, ArrayVolume(target.image[2:4]), probabilities=tmp_path / "p.npy", device=CPU,
                          normalizer=target.normalizer)
    assert result.normalizer is target.normalizer
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), whole[:, 2:4], atol=1e-6)
    with pytest.raises(TypeError, match="normalizer"):
        predict_file(model, ArrayVolume(target.image), probabilities=tmp_path / "q.npy", normalizer="whole")


def test_the_sampler_standardises_with_the_normalizer_it_is_given(target):
    norm = Normalizer(None if target.image.dtype == np.uint8 else (0.0, 300.0), 0.3, 0.2)
    s = PatchSampler(target.image, target.labels, patch=48, slices=[6], augment=False, normalizer=norm, device=CPU)
    assert s.normalizer is norm
    np.testing.assert_allclose(s.sample(1)["image"].numpy()[0, 0], norm(target.image[6]), atol=1e-6)
    assert PatchSampler(target.image, patch=48, device=CPU).normalizer == target.normalizer  # default: the volume's own


def test_adabn_statistics_pass_uses_the_volume_normalizer(target):
    part, norm = target.image[::2], target.normalizer
    adapted = adapt_batchnorm(_unet(), part, normalizer=norm, batch_size=2)
    stats = normalised_statistics(adapted, part, normalizer=norm)
    np.testing.assert_allclose(stats["mean"], 0, atol=1e-4)
    np.testing.assert_allclose(stats["var"], 1, atol=1e-3)
    own = adapt_batchnorm(_unet(), part, batch_size=2)
    layer = lambda m: next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))  # noqa: E731
    assert not torch.allclose(layer(adapted).running_mean, layer(own).running_mean)


# --------------------------------------------------------------------------- (b) report_stride


def test_report_stride_changes_which_slices_are_scored_not_their_values(target, source):
    model = _unet()
    prior = source_boundary_prior(source.labels)
    whole = predict_probabilities(model, target.image, device=CPU)
    _differs(model, target.image[::2], target.normalizer)
    src_codes = predict_labels(model, source.image, normalizer=source.normalizer, device=CPU)
    for stride in (1, 2, 3):
        report = epoch_report(model, target.image, prior, CPU, source_val=source, stride=stride)
        expected = target_diagnostics(whole[:, ::stride])  # the stride-1 predictions of those slices
        assert report["target_boundary_fraction"] == pytest.approx(expected["target_boundary_fraction"], abs=1e-12)
        assert report["target_entropy"] == pytest.approx(expected["target_entropy"], abs=1e-6)
        src = metrics.boundary_scores(src_codes[::stride], for_task(source.labels[::stride], "boundary"))
        assert report["source_val_boundary_jaccard"] == pytest.approx(src["boundary_jaccard"], abs=1e-12)
    # a normaliser passed in is the one used (the loop computes it once per run)
    passed = epoch_report(model, target.image, prior, CPU, stride=2, normalizer=target.normalizer)
    assert passed["target_entropy"] == pytest.approx(target_diagnostics(whole[:, ::2])["target_entropy"], abs=1e-6)


# --------------------------------------------------------------------------- (c) Fig. 6 snapshots


def test_snapshot_is_the_slice_of_the_whole_volume_prediction(target):
    model = _unet()
    whole = predict_probabilities(model, target.image, device=CPU)
    _differs(model, target.image[3:4], target.normalizer)
    for z in (0, 3, 6):
        np.testing.assert_allclose(boundary_snapshot(model, target.image, z, CPU), whole[BOUNDARY - 1, z], atol=1e-6)
        np.testing.assert_allclose(boundary_snapshot(model, target.image, z, CPU, normalizer=target.normalizer),
                                   whole[BOUNDARY - 1, z], atol=1e-6)


# --------------------------------------------------------------------------- (a) reported = predict + evaluate


def _train_config(preset, steps):
    """A ci-preset boundary run, every setting spelled out."""
    return TrainConfig(task="boundary", weights="distance", loss="ce", steps=steps, batch_size=preset.batch_size,
                       patch=preset.patch, lr=preset.lr, val_every=preset.val_every, val_slices=0.25, jitter=False,
                       seed=0, model=dict(preset.model), device="cpu", precision="float32")


def test_training_validation_equals_predict_and_evaluate_on_the_held_out_slices():
    preset = PRESETS["ci"]
    vol = drifting(make_volume("fibsem", (8, 96, 96), seed=2), 1.0, 0.4)
    steps = 2 * preset.val_every  # two validations; the model predicts both classes by then
    run = train_supervised(vol.image, vol.labels, _train_config(preset, steps), progress=False)
    _, val_z = split_slices(vol.shape[0], 0.25)
    assert run.history["val_slices"] == val_z.tolist()
    codes = predict_labels(run.model, vol.image[val_z], normalizer=vol.normalizer, device=CPU)
    own = predict_labels(run.model, vol.image[val_z], device=CPU)  # the held-out slices on their own
    assert (codes != own).mean() > 0.01, "the fixture does not drift enough to test anything"
    expected = metrics.evaluate(codes, for_task(vol.labels[val_z], "boundary"), "boundary")
    last = run.history["val"][-1]
    assert last["step"] == steps
    for key in ("mean_jaccard", "boundary_jaccard", "boundary_f1"):
        assert last[key] == pytest.approx(expected[key], abs=1e-12), key
    assert last["jaccard"] == pytest.approx(expected["jaccard"], abs=1e-12)


def test_paper_scores_equal_predict_and_evaluate(target):
    model = _unet()
    codes = predict_labels(model, target.image, device=CPU)
    labels = for_task(target.labels, "boundary")
    assert score(model, target, "boundary", device=CPU) == metrics.evaluate(codes, labels, "boundary")
    thin = score_slices(model, target, "boundary", stride=2, device=CPU)
    expected = metrics.pixel_scores(codes[::2], labels[::2], "boundary")
    assert thin == {k: pytest.approx(v, abs=1e-12) for k, v in expected.items() if k != "jaccard"}


def _adapt_config(stride):
    return AdaptConfig(method="paper", epochs=2, steps_per_epoch=2, batch_size=2, patch=32, lr_g=1e-3, lr_d=1e-4,
                       mismatch_gap=2, report_stride=stride, seed=0, discriminator={"width": 4, "depth": 2},
                       device="cpu", precision="float32")


def test_adaptation_report_and_snapshots_equal_predict_and_evaluate_from_the_cli(tmp_path, capsys, monkeypatch,
                                                                              target, source):
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")
    eval_volume = drifting(make_volume("snemi", (5, 48, 48), seed=3), 0.5, 1.0)
    net = _unet()
    _differs(net, eval_volume.image[2:3], eval_volume.normalizer)
    res = adapt(net, source.labels, target.image, _adapt_config(2), source_image=source.image, source_val=source,
                target_eval=eval_volume, progress=False)
    last = res.history["epochs"][-1]

    # the target scores beside the run: predict + evaluate of the final model on the eval volume
    save_checkpoint(tmp_path / "m.pt", res.model, config={"task": "boundary"})
    write_volume(tmp_path / "eval.tif", eval_volume.image)
    write_volume(tmp_path / "labels.tif", for_task(eval_volume.labels, "boundary"))
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--image", str(tmp_path / "eval.tif"),
                 "--out", str(tmp_path / "pred.tif"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--prediction", str(tmp_path / "pred.tif"), "--labels", str(tmp_path / "labels.tif"),
                 "--task", "boundary", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for key, value in cli.items():
        assert last["target"][key] == (pytest.approx(value, abs=1e-9) if not isinstance(value, dict) else
                                       {k: pytest.approx(v, abs=1e-9) for k, v in value.items()}), key

    # the label-free entries: the stride-1 predictions of every second target slice
    whole = predict_probabilities(res.model, target.image, device=CPU)
    assert last["target_entropy"] == pytest.approx(target_diagnostics(whole[:, ::2])["target_entropy"], abs=1e-6)

    # Fig. 6: each snapshot is the snapshot slice of the whole-volume prediction
    z = res.history["snapshot_slice"]
    np.testing.assert_allclose(res.snapshots[0], predict_probabilities(net, eval_volume.image)[BOUNDARY - 1, z],
                               atol=1e-6)
    np.testing.assert_allclose(res.snapshots[-1],
                               predict_probabilities(res.model, eval_volume.image)[BOUNDARY - 1, z], atol=1e-6)


def test_adabn_run_scores_and_pictures_a_thinned_eval_volume_with_its_whole_normalizer(target, source):
    from emseg_tutorial.adapt import run_method

    eval_volume = drifting(make_volume("snemi", (6, 48, 48), seed=4), 0.5, 1.0).take(slice(None, None, 2))
    net = _unet()
    _differs(net, eval_volume.image, eval_volume.normalizer)  # the thinned slices on their own
    run = run_method("adabn", net, source, target.image, config_kwargs={"report_stride": 2, "device": "cpu"},
                     source_val=source, target_eval=eval_volume, progress=False)
    stats = normalised_statistics(run.model, target.image, normalizer=target.normalizer)
    np.testing.assert_allclose(stats["mean"], 0, atol=1e-4)  # adapted to the target as its reports see it
    z = eval_volume.shape[0] // 2
    for model, snap in zip((net, run.model), run.snapshots):
        probs = predict_probabilities(model, eval_volume.image, normalizer=eval_volume.normalizer)
        np.testing.assert_allclose(snap, probs[BOUNDARY - 1, z], atol=1e-5)
    codes = predict_labels(run.model, eval_volume.image, normalizer=eval_volume.normalizer)
    assert run.epochs[-1]["target"] == metrics.evaluate(codes, for_task(eval_volume.labels, "boundary"), "boundary")
