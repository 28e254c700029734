"""Chapter 6: every adaptation method's plumbing, the mismatched-slice sampler, AdaBN, histogram
matching and rank normalisation, on tiny volumes."""

import numpy as np
import pytest
import torch

from emseg_tutorial.adapt.loop import step_context
from emseg_tutorial.data.histmatch import match_to_source, rank_normalize
from emseg_tutorial.data.patches import PatchSampler, distant_slices
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.labels import for_task
from emseg_tutorial.models import UNet2d
from emseg_tutorial.adapt import adapt, adapt_batchnorm, get_method, method_names
from emseg_tutorial.adapt import steps as adapt_steps
from emseg_tutorial.adapt.adabn import batchnorm_layers, normalised_statistics

from helpers import ci_config, tiny_unet




METHODS = method_names(trains=True)
TINY = dict(epochs=1, steps_per_epoch=2, batch_size=2, patch=32, mismatch_gap=2,
            discriminator={"width": 4, "depth": 2})




def _changed(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return any(not torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_reports(adapt_volumes, method):
    src, tgt = adapt_volumes
    net = tiny_unet()
    res = adapt(net, src.labels, tgt.image, ci_config(method=method, **TINY), source_image=src.image,
                source_val=src, target_eval=tgt, progress=False)
    assert [e["epoch"] for e in res.history["epochs"]] == [0, 1]
    assert _changed(net, res.model)
    last = res.history["epochs"][-1]
    assert last["target"]["boundary_jaccard"] is not None and 0 <= last["target_entropy"] <= 1
    if method == "selftrain":
        assert res.discriminator is None and 0 <= last["pseudo_fraction"] <= 1
    else:
        assert 0 <= last["d_acc_real"] <= 1 and 0 <= last["d_acc_fake"] <= 1
    if method in ("conditional", "conditional-paper"):
        assert res.discriminator.init_kwargs["in_channels"] == 3  # image + 2 label channels
        assert {"d_acc_fake_mismatch", "d_acc_fake_target"} <= set(last)


@pytest.mark.parametrize("method", ["selftrain", "conditional"])
def test_methods_run_with_the_device_samplers(adapt_volumes, method):
    """The samplers CUDA runs (drawn on the device, jitter with a torch stream), on the CPU."""
    src, tgt = adapt_volumes
    config = ci_config(method=method, **TINY)
    labels = for_task(src.labels, "boundary")
    ctx = step_context(tiny_unet(), labels, tgt.image, config, src.image, torch.device("cpu"), 2)
    assert isinstance(ctx.source, PatchSampler) and isinstance(ctx.target, PatchSampler)
    assert ctx.source.device.type == ctx.target.device.type == "cpu"
    assert isinstance(ctx.rng, torch.Generator) and ctx.rng.device.type == "cpu"
    image = ctx.batch(ctx.target)["image"]
    jittered = adapt_steps.jittered(ctx, image)
    assert jittered.shape == image.shape and jittered.device == image.device and not torch.equal(jittered, image)
    net = tiny_unet()
    res = adapt(net, src.labels, tgt.image, config, source_image=src.image, progress=False)
    assert _changed(res.model, net) and len(res.history["epochs"]) == 2


def test_method_defaults_and_validation():
    assert ci_config(method="paper").source_weight == 0 and ci_config(method="paper").adv_weight == 1
    assert ci_config(method="adaptsegnet").source_weight == 1
    assert ci_config(method="advent", adv_weight=0.5).adv_weight == 0.5  # explicit wins
    assert ci_config(method="selftrain").adv_weight is None  # no discriminator, no adversarial weight
    with pytest.raises(ValueError, match="condition_image"):
        ci_config(method="conditional", condition_image="blur")
    with pytest.raises(ValueError, match="pseudo_threshold"):
        ci_config(method="selftrain", pseudo_threshold=1.5)


@pytest.mark.parametrize("method", [m for m in METHODS if get_method(m).needs_source_image(ci_config(method=m))])
def test_methods_other_than_paper_need_the_source_image(adapt_volumes, method):
    src, tgt = adapt_volumes
    with pytest.raises(ValueError, match="needs the source image"):
        adapt(tiny_unet(), src.labels, tgt.image, ci_config(method=method, **TINY), progress=False)


@pytest.mark.parametrize("method", ["adaptsegnet", "selftrain"])
def test_source_loss_reaches_the_unet(adapt_volumes, method):
    # Unlike the paper's method (tests/test_adapt.py), methods that keep the source loss read the
    # source labels in the U-Net's update even when the discriminator does not learn.
    src, tgt = adapt_volumes
    cfg = ci_config(method=method, lr_d=0.0, **TINY)
    shuffled = np.ascontiguousarray(src.labels[::-1, ::-1, ::-1])
    a = adapt(tiny_unet(), src.labels, tgt.image, cfg, source_image=src.image, progress=False).model
    b = adapt(tiny_unet(), shuffled, tgt.image, cfg, source_image=src.image, progress=False).model
    assert _changed(a, b)


def test_conditional_discriminator_inputs(adapt_volumes, monkeypatch):
    src, tgt = adapt_volumes
    seen = []
    real_step = adapt_steps.discriminator_step

    def spy(disc, opt, real, fake, scaler=None):
        seen.append((real.detach().clone(), [f.detach().clone() for f in fake]))
        return real_step(disc, opt, real, fake, scaler)

    monkeypatch.setattr(adapt_steps, "discriminator_step", spy)
    adapt(tiny_unet(), src.labels, tgt.image, ci_config(method="conditional", **TINY), source_image=src.image,
          progress=False)
    assert len(seen) == 2
    for real, (wrong, target) in seen:
        assert real.shape[1] == wrong.shape[1] == target.shape[1] == 3
        # image channel: the same source crops for real and wrong pairs, rank-normalised
        assert torch.equal(real[:, 0], wrong[:, 0])
        assert torch.allclose(real[:, 0].mean((1, 2)), torch.zeros(2), atol=1e-4)
        # label channels: one-hot truth, a different (distant) one-hot truth, soft predictions
        assert set(torch.unique(real[:, 1:]).tolist()) <= {0.0, 1.0}
        assert not torch.equal(real[:, 1:], wrong[:, 1:])
        assert ((target[:, 1:] > 0) & (target[:, 1:] < 1)).float().mean() > 0.99


def test_conditional_raw_image_is_not_rank_normalised(adapt_volumes, monkeypatch):
    src, tgt = adapt_volumes
    calls = []
    monkeypatch.setattr(adapt_steps, "rank_normalize", lambda x: calls.append(1) or x)
    adapt(tiny_unet(), src.labels, tgt.image, ci_config(method="conditional", condition_image="raw", **TINY),
          source_image=src.image, progress=False)
    assert not calls
    adapt(tiny_unet(), src.labels, tgt.image, ci_config(method="conditional", **TINY), source_image=src.image,
          progress=False)
    assert calls


def test_advent_discriminator_sees_self_information():
    p = torch.softmax(torch.randn(2, 2, 8, 8), 1)
    info = adapt_steps.self_information(p)
    from emseg_tutorial.losses import entropy_map
    assert torch.allclose(info.sum(1), entropy_map(p), atol=1e-6)
    assert float(info.min()) >= 0 and float(info.max()) <= 1 / (np.e * np.log(2)) + 1e-6  # max of -p log2 p


def test_ema_update():
    a, b = tiny_unet(seed=0), tiny_unet(seed=1)
    before = [p.clone() for p in a.parameters()]
    adapt_steps.ema_update(a, b, 0.75)
    for t0, t, s in zip(before, a.parameters(), b.parameters()):
        assert torch.allclose(t, 0.75 * t0 + 0.25 * s)


# --------------------------------------------------------------------------- mismatched slices


@pytest.mark.parametrize("depth, gap", [(10, 1), (10, 5), (48, 8), (7, 3)])
def test_distant_slices_keep_the_gap_and_cover_both_sides(depth, gap):
    z = torch.arange(depth).repeat_interleave(400)
    other = distant_slices(z, depth, gap, torch.Generator().manual_seed(0))
    assert bool(((other - z).abs() >= gap).all()) and other.min() >= 0 and other.max() < depth
    for zi in range(depth):  # every allowed partner is drawn
        allowed = {o for o in range(depth) if abs(o - zi) >= gap}
        assert set(other[z == zi].tolist()) == allowed


def test_distant_slices_rejects_impossible_gap():
    with pytest.raises(ValueError, match="at most 3"):
        distant_slices(torch.tensor([3]), 7, 4, torch.Generator())


def test_sampler_returns_mismatched_labels_from_distant_slices():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (12, 20, 20), dtype=np.uint8)
    lab = np.broadcast_to(np.arange(1, 13, dtype=np.uint8)[:, None, None] % 2 + 1, img.shape).copy()
    lab[:, 0, 0] = 0
    s = PatchSampler(img, lab, patch=16, seed=0, mismatch_gap=5)
    b = {k: v.numpy() for k, v in s.sample(64).items()}
    assert np.all(np.abs(b["z"] - b["z_mismatched"]) >= 5)
    # each crop of the wrong map is the partner slice's truth (constant per slice here)
    expected = (b["z_mismatched"] + 1) % 2  # class index of the partner slice
    assert np.all((b["mismatched"] == expected[:, None, None]) | (b["mismatched"] == -1))
    with pytest.raises(ValueError, match="needs labels"):
        PatchSampler(img, None, mismatch_gap=2)


# --------------------------------------------------------------------------- AdaBN


def test_adabn_restores_exact_target_statistics():
    net = tiny_unet()
    net.train()
    with torch.no_grad():  # give the source model some (wrong) running statistics
        net(torch.randn(4, 1, 32, 32) * 3 + 1)
    target = make_volume("snemi", (5, 40, 40), seed=2).image
    adapted = adapt_batchnorm(net, target, batch_size=2)
    stats = normalised_statistics(adapted, target)
    layers = batchnorm_layers(adapted)
    eps = layers[0].eps
    var = np.concatenate([l.running_var.numpy() for l in layers])
    np.testing.assert_allclose(stats["mean"], 0, atol=1e-4)
    np.testing.assert_allclose(stats["var"], var / (var + eps), rtol=1e-4)
    # the first layer's statistics are those of its input, computed independently
    from emseg_tutorial.data.normalize import standardize, to_unit_range
    x = torch.from_numpy(standardize(to_unit_range(target)))[:, None].double()
    conv = net.encoders[0][0] if hasattr(net, "encoders") else None
    if conv is not None:
        h = torch.nn.functional.conv2d(x, conv.weight.double(), None if conv.bias is None else conv.bias.double(),
                                       padding=1)
        np.testing.assert_allclose(layers[0].running_mean.numpy(), h.mean((0, 2, 3)).detach().numpy(), rtol=1e-4, atol=1e-6)
    # only batch-norm buffers change, the argument is untouched, the result does not depend on batch size
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), adapted.parameters()))
    other = adapt_batchnorm(net, target, batch_size=5)
    for a, b in zip(layers, batchnorm_layers(other)):
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)
    assert not torch.equal(batchnorm_layers(net)[0].running_mean, layers[0].running_mean)


def test_adabn_needs_batchnorm():
    with pytest.raises(ValueError, match="no batch-norm"):
        adapt_batchnorm(UNet2d(out_channels=2, depth=2, base_width=4, norm=None), np.zeros((1, 32, 32), np.uint8))


# --------------------------------------------------------------------------- histogram matching


def test_match_to_source_gives_the_source_histogram_and_keeps_order():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (3, 30, 30)).astype(np.uint8)
    target = (rng.random((2, 25, 25)) ** 3 * 80).astype(np.float32)
    matched = match_to_source(target, source)
    assert matched.dtype == np.uint8 and matched.shape == target.shape
    q = np.linspace(0, 1, 11)
    np.testing.assert_allclose(np.quantile(matched, q), np.quantile(source, q), atol=3)
    order = np.argsort(target, axis=None, kind="stable")
    assert np.all(np.diff(matched.ravel()[order].astype(int)) >= 0)  # monotonic mapping


def test_rank_normalize_equalises_histograms():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (1, 1, 8, 8)) ** 3
    b = rng.uniform(100, 200, (1, 1, 8, 8))
    out = rank_normalize(np.concatenate([a, b])).numpy()  # array-likes are ranked as tensors
    np.testing.assert_allclose(np.sort(out[0].ravel()), np.sort(out[1].ravel()))
    np.testing.assert_allclose(out.reshape(2, -1).mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(out.reshape(2, -1).std(1), 1, atol=1e-5)
    t = rank_normalize(torch.from_numpy(a).float())
    assert isinstance(t, torch.Tensor) and np.array_equal(np.argsort(t.numpy().ravel()), np.argsort(a.ravel()))


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("method", method_names())
def test_cli_adapt_every_method(adapt_cli_files, method, capsys):
    import json

    from emseg_tutorial.cli import main
    from emseg_tutorial.data.readers import read_image
    from emseg_tutorial.store import load_checkpoint

    p = adapt_cli_files
    source = ["--source-image", f"{p}/s.tif"] if get_method(method).needs_source_image(ci_config(method).to_dict()
                                                                                        if get_method(method).trains
                                                                                        else {}) else []
    args = ["adapt", "--model", f"{p}/m3.pt", "--source-labels", f"{p}/sl.tif", *source,
            "--target-image", f"{p}/t.tif", "--eval-labels", f"{p}/tl.tif", "--method", method,
            "--out", f"{p}/out", "--quiet"] + (["--epochs", "1", "--steps", "2"] if get_method(method).trains else [])
    assert main(args) == 0, capsys.readouterr().err
    history = json.loads((p / "out" / "history.json").read_text())
    assert history["epochs"][-1]["target"]["boundary_jaccard"] is not None
    if get_method(method).discriminator != "none":  # the hard-vs-soft probe is in every adversarial history
        assert 0 <= history["epochs"][-1]["d_acc_target_hard"] <= 1
    model, ckpt = load_checkpoint(p / "out" / "model.pt")
    assert ckpt["config"]["adapt"]["method"] == method
    assert (p / "out" / "discriminator.pt").is_file() == (get_method(method).discriminator != "none")
    assert sorted(f.name for f in (p / "out").iterdir()) == sorted(get_method(method).files)  # the record's files
    for path in (p / "out").glob("*.pt"):            # every checkpoint the CLI writes reads back
        net, saved = load_checkpoint(path)
        assert type(net).arch == saved["arch"]
        assert path.name != "discriminator.pt" or type(net).__name__ == "PatchDiscriminator"
    if method == "histmatch":
        matched, _ = read_image(f"{p}/out/target_matched.tif")
        assert matched.shape == (4, 48, 48)


def test_cli_adapt_needs_source_image(adapt_cli_files, capsys):
    from emseg_tutorial.cli import main

    p = adapt_cli_files
    assert main(["adapt", "--model", f"{p}/m3.pt", "--source-labels", f"{p}/sl.tif", "--target-image",
                 f"{p}/t.tif", "--method", "adaptsegnet", "--out", f"{p}/o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--source-image" in err


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_adabn_one_pass_equals_layer_by_layer(upsample):
    """The one-pass walk of a U-Net gives the statistics of one pass per layer, exactly."""
    torch.manual_seed(0)
    net = UNet2d(out_channels=2, depth=3, base_width=4, upsample=upsample)
    image = np.random.default_rng(1).integers(0, 255, (5, 40, 36), dtype=np.uint8)  # padding, odd batches
    fast = adapt_batchnorm(net, image, batch_size=2)
    slow = adapt_batchnorm(net, image, batch_size=3, memory_budget=0)
    for a, b in zip(batchnorm_layers(fast), batchnorm_layers(slow)):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-5, atol=1e-6)
    stats = normalised_statistics(fast, image)
    np.testing.assert_allclose(stats["mean"], 0, atol=1e-4)
