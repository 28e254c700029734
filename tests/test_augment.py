"""Jitter: the paper's random intensity augmentation (M2 -> M3), in torch on every device.

The numpy jitter the library had before lives on here only, as :func:`numpy_jitter`, the
reference the torch jitter's effect sizes are compared with (different random streams, so
compared by distribution, not number for number).
"""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from emseg_tutorial.data.augment import MIN_BLUR, Jitter, gaussian_blur

OFF = {"brightness": 0, "contrast": 0, "gamma": 0, "blur": 0, "noise": 0}


def numpy_jitter(jitter: Jitter, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The reference: the same :meth:`Jitter.draw` and transforms with numpy and scipy."""
    x = np.asarray(batch, dtype=np.float32).copy()
    n = x.shape[0]
    d = jitter.draw(n, lambda lo, hi: rng.uniform(lo, hi, n), lambda: rng.random(n) < jitter.p)
    col = lambda v: np.asarray(v)[:, None, None]  # noqa: E731
    if "sigma" in d:
        for i in np.flatnonzero(d["sigma"] > MIN_BLUR):
            x[i] = ndi.gaussian_filter(x[i], d["sigma"][i])
    if "log_gamma" in d:
        x = np.where(col(d["gamma_on"]), np.clip(x, 0, 1) ** col(np.exp(d["log_gamma"])), x)
    if "contrast" in d:
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = np.where(col(d["contrast_on"]), (x - mean) * col(d["contrast"]) + mean, x)
    if "shift" in d:
        x = x + col(d["shift"])
    if "noise_sd" in d:
        x = x + col(d["noise_sd"]) * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _apply(jitter: Jitter, x: np.ndarray, seed: int) -> np.ndarray:
    """The library's jitter on an array's tensor, with a CPU generator seeded ``seed``."""
    out = jitter(torch.from_numpy(np.asarray(x)), torch.Generator().manual_seed(seed))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    return out.numpy()


def _patches(n=8, size=24, seed=0):
    """Textured [0.25, 0.75] patches: room to brighten, darken and stretch without clipping."""
    rng = np.random.default_rng(seed)
    return (0.25 + 0.5 * rng.random((n, size, size))).astype(np.float32)


def _only(name, value, p=1.0):
    return Jitter(**{**OFF, name: value, "p": p})


def test_output_range_dtype_and_shape():
    x = _patches()
    x[0] = 0.0
    x[1] = 1.0
    y = _apply(Jitter(brightness=0.5, contrast=0.9, gamma=3, blur=2, noise=0.3, p=1), x, 0)
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert y.min() == 0.0 and y.max() == 1.0   # strong jitter saturates somewhere: clipping happened


def test_input_left_untouched_and_float64_accepted():
    x = torch.from_numpy(_patches().astype(np.float64))
    before = x.clone()
    y = Jitter(p=1)(x, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)
    assert y.dtype == torch.float32


def test_deterministic_for_a_seed():
    x = _patches()
    jit = Jitter()
    a, b, c = _apply(jit, x, 7), _apply(jit, x, 7), _apply(jit, x, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_p_zero_is_the_identity():
    x = _patches()
    y = _apply(Jitter(brightness=0.5, contrast=0.9, gamma=3, blur=2, noise=0.3, p=0), x, 0)
    np.testing.assert_array_equal(y, x)


def test_everything_off_is_the_identity():
    x = _patches()
    np.testing.assert_array_equal(_apply(Jitter(**OFF, p=1), x, 0), x)


def test_brightness_alone_shifts_each_patch_by_a_constant():
    x = _patches()
    y = _apply(_only("brightness", 0.2), x, 0)
    shift = (y - x).reshape(len(x), -1)
    np.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], 1), atol=1e-6)
    assert np.all(np.abs(shift[:, 0]) <= 0.2 + 1e-6)
    assert np.abs(shift[:, 0]).max() > 0.01
    assert len(np.unique(np.round(shift[:, 0], 5))) == len(x)   # drawn per patch


def test_contrast_alone_scales_about_the_patch_mean():
    x = _patches()
    y = _apply(_only("contrast", 0.3), x, 0)
    assert not np.allclose(y, x)
    mean = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y.mean(axis=(1, 2), keepdims=True), mean, atol=1e-5)
    factor = (y - mean) / (x - mean)
    ok = np.abs(x - mean) > 0.05
    for f, m in zip(factor, ok):
        np.testing.assert_allclose(f[m], np.median(f[m]), atol=1e-3)
        assert 0.7 - 1e-3 <= np.median(f[m]) <= 1.3 + 1e-3


def test_gamma_alone_is_a_monotone_power():
    x = _patches()
    y = _apply(_only("gamma", 1.8), x, 0)
    assert not np.allclose(y, x)
    g = np.log(y) / np.log(x)
    for gi in g:
        np.testing.assert_allclose(gi, gi.flat[0], rtol=1e-4)
        assert 1 / 1.8 - 1e-4 <= gi.flat[0] <= 1.8 + 1e-4


def test_blur_alone_smooths():
    x = _patches()
    y = _apply(_only("blur", 1.5), x, 0)
    assert not np.allclose(y, x)
    changed = [i for i in range(len(x)) if not np.array_equal(y[i], x[i])]
    assert changed
    for i in changed:   # blurring keeps the mean and lowers the variance
        assert y[i].std() < x[i].std()
        assert abs(y[i].mean() - x[i].mean()) < 1e-3
    # it is a Gaussian filter of the patch
    i = changed[0]
    sigmas = np.linspace(0.3, 1.5, 121)
    errors = [np.abs(ndi.gaussian_filter(x[i], s) - y[i]).max() for s in sigmas]
    assert min(errors) < 5e-3


def test_noise_alone_adds_zero_mean_noise():
    x = _patches(n=4, size=64)
    y = _apply(_only("noise", 0.08), x, 0)
    d = y - x
    assert not np.allclose(y, x)
    assert np.abs(d.mean()) < 0.01
    assert 0 < d.std() <= 0.08 + 0.01
    assert len({np.round(di.std(), 4) for di in d}) > 1   # each patch draws its own strength


def test_probability_applies_to_some_patches_only():
    x = _patches(n=64)
    y = _apply(_only("brightness", 0.2, p=0.5), x, 0)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(x, y)])
    assert 10 < changed.sum() < 54


@pytest.mark.parametrize(
    "kwargs",
    [{"brightness": -0.1}, {"contrast": -1}, {"gamma": -2}, {"blur": -0.5}, {"noise": -0.01},
     {"p": -0.1}, {"p": 1.5}, {"gamma": 0.5}],
)
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(ValueError, match="jitter"):
        Jitter(**kwargs)


def test_gamma_one_and_zero_are_valid():
    x = _patches()
    for g in (0, 1):
        np.testing.assert_allclose(_apply(_only("gamma", g), x, 0), x, atol=1e-6)


# --------------------------------------------------------------------------- how the ranges are fixed


def test_default_ranges_follow_the_source_rule():
    """The defaults are the rule of the module docstring on the source twin, rounded (within
    25 %, averaged over two seeds): no target setting enters."""
    from emseg_tutorial.data.synthetic import FIBSEM, make_volume

    rules = [Jitter.from_source(make_volume("fibsem", (6, 256, 256), seed=s).image, FIBSEM.psf_sigma[1])
             for s in (0, 1)]
    default = Jitter()
    for name in ("brightness", "contrast", "gamma", "blur", "noise"):
        rule = np.mean([getattr(r, name) for r in rules])
        assert abs(getattr(default, name) - rule) <= 0.25 * rule, name


def test_from_source_checks_its_input():
    with pytest.raises(ValueError, match="standard deviation"):
        Jitter.from_source(np.full((16, 16), 0.5), 1.0)
    with pytest.raises(ValueError, match="psf_sigma"):
        Jitter.from_source(np.random.default_rng(0).random((16, 16)), -1.0)


def test_unlike_excludes_the_target_settings():
    from emseg_tutorial.data.synthetic import SNEMI

    j = Jitter.unlike()
    lo_g, hi_g = j.gamma_centre / j.gamma, j.gamma_centre * j.gamma
    assert not lo_g <= SNEMI.gamma <= hi_g and hi_g < 1
    assert j.contrast_centre - j.contrast > 1 > SNEMI.contrast[1]
    assert j.blur == 0 and j.noise == 0
    g = np.exp(j.draw(500, lambda lo, hi: np.random.default_rng(1).uniform(lo, hi, 500),
                      lambda: np.ones(500, bool))["log_gamma"])
    assert lo_g - 1e-6 <= g.min() and g.max() <= hi_g + 1e-6


def test_named_jitters():
    from emseg_tutorial.data.augment import get_jitter

    assert get_jitter(False) is None and get_jitter(None) is None
    assert get_jitter(True) == Jitter() == get_jitter("default")
    assert get_jitter("unlike") == Jitter.unlike()
    with pytest.raises(ValueError, match="jitter must be"):
        get_jitter("sideways")


# --------------------------------------------------------------------------- against the numpy reference


def test_blur_is_scipys_gaussian_filter_per_patch():
    x = _patches(n=4, size=20)
    sigma = torch.tensor([0.0, 0.5, 1.0, 1.7])
    out = gaussian_blur(torch.from_numpy(x), sigma, max_sigma=1.7).numpy()
    np.testing.assert_array_equal(out[0], x[0])  # at most MIN_BLUR: untouched
    for i in (1, 2, 3):
        np.testing.assert_allclose(out[i], ndi.gaussian_filter(x[i], float(sigma[i])), atol=1e-5)


def _jitter_effects(x, y):
    """Per-patch effect sizes of a jitter ``x -> y``: mean shift, std ratio, high-frequency ratio."""
    shift = (y - x).mean(axis=(1, 2))
    ratio = y.std(axis=(1, 2)) / x.std(axis=(1, 2))
    rough = lambda a: np.abs(np.diff(a, axis=2)).mean(axis=(1, 2))  # noqa: E731
    return {"shift_mean": shift.mean(), "shift_sd": shift.std(), "ratio_mean": ratio.mean(),
            "ratio_sd": ratio.std(), "rough": (rough(y) / rough(x)).mean(),
            "changed": np.mean(np.abs(y - x).max(axis=(1, 2)) > 1e-6)}


@pytest.mark.parametrize("params", [
    {**OFF, "brightness": 0.15}, {**OFF, "contrast": 0.35}, {**OFF, "gamma": 1.8}, {**OFF, "blur": 1.5},
    {**OFF, "noise": 0.08}, {**OFF, "brightness": 0.15, "p": 0.5}, {}, "unlike",
], ids=["brightness", "contrast", "gamma", "blur", "noise", "p0.5", "default", "unlike"])
def test_jitter_has_the_numpy_references_effect_sizes(params):
    jitter = Jitter.unlike() if params == "unlike" else Jitter(**params)
    rng = np.random.default_rng(0)
    x = (0.25 + 0.5 * rng.random((1500, 12, 12))).astype(np.float32)
    ref = _jitter_effects(x, numpy_jitter(jitter, x, np.random.default_rng(1)))
    out = _apply(jitter, x, 1)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    got = _jitter_effects(x, out)
    for key in ref:  # 1500 patches: a few standard errors of each statistic
        assert abs(got[key] - ref[key]) <= 0.05 * max(1.0, abs(ref[key])), (key, got[key], ref[key])


# --------------------------------------------------------------------------- beyond the paper: TrainConfig.augment
# (issue 22, item 2): a mild intensity augmentation and an elastic deformation, off by default


def _labelled_patches(n=4, size=32, seed=0):
    """Class indices -1..3 (-1 ignored) in blocks, weights of a few distinct values, a textured image."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(-1, 4, (n, size // 8, size // 8))
    target = torch.from_numpy(np.kron(blocks, np.ones((8, 8), dtype=np.int64)))
    weight = (target.float() + 2) * 1.5
    image = torch.from_numpy(_patches(n, size, seed))
    return {"image": image, "target": target, "weight": weight}


def test_elastic_keeps_label_codes_and_weight_values_and_moves_pixels():
    from emseg_tutorial.data.augment import Elastic

    patches = _labelled_patches()
    out = Elastic(sigma=4.0)(patches, torch.Generator().manual_seed(0))
    assert set(out["target"].unique().tolist()) <= set(patches["target"].unique().tolist())
    assert set(out["weight"].unique().tolist()) <= set(patches["weight"].unique().tolist())
    for key in patches:
        assert not torch.equal(out[key], patches[key]), key   # something moved
    changed = (out["target"] != patches["target"]).float().mean()
    assert 0.005 < changed < 0.5                              # a bend, not a scramble
    lo, hi = patches["image"].amin(dim=(1, 2)), patches["image"].amax(dim=(1, 2))
    assert bool(((out["image"] >= lo[:, None, None] - 1e-6) & (out["image"] <= hi[:, None, None] + 1e-6)).all())


def test_elastic_moves_every_tensor_with_one_field_per_patch():
    """Read at the nearest pixel, an image made of the labels is the labels' deformation exactly."""
    from emseg_tutorial.data.augment import Elastic

    target = _labelled_patches()["target"]
    out = Elastic(sigma=4.0)({"image": target.float(), "target": target}, torch.Generator().manual_seed(3), smooth=())
    assert torch.equal(out["image"], out["target"].float()) and not torch.equal(out["target"], target)


def test_elastic_matches_scipy_on_one_patch():
    """The batch call equals map_coordinates on each patch alone (order 1, reflect borders)."""
    from emseg_tutorial.data.augment import Elastic

    image = _labelled_patches()["image"]
    elastic = Elastic(sigma=5.0)
    out = elastic({"image": image}, torch.Generator().manual_seed(1))["image"].numpy()
    d = elastic.displacements(len(image), image.shape[1:], torch.Generator().manual_seed(1)).numpy()
    i, j = np.mgrid[:image.shape[1], :image.shape[2]]
    for b in range(len(image)):
        ref = ndi.map_coordinates(image[b].numpy(), [i + d[b, 0], j + d[b, 1]], order=1, mode="reflect")
        np.testing.assert_allclose(out[b], ref, atol=1e-6)


def test_elastic_is_deterministic_for_a_seed_and_keeps_shapes_dtypes_and_inputs():
    from emseg_tutorial.data.augment import Elastic

    patches = _labelled_patches()
    before = {k: v.clone() for k, v in patches.items()}
    a, b, c = (Elastic()(patches, torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    for key in patches:
        assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key]), key
        assert a[key].shape == patches[key].shape and a[key].dtype == patches[key].dtype, key
        assert torch.equal(patches[key], before[key]), key   # inputs untouched


@pytest.mark.parametrize("kwargs", [{"p": 0.0}, {"sigma": 0.0}])
def test_elastic_switched_off_is_the_identity(kwargs):
    from emseg_tutorial.data.augment import Elastic

    patches = _labelled_patches()
    out = Elastic(**kwargs)(patches, torch.Generator().manual_seed(0))
    for key in patches:
        assert torch.equal(out[key], patches[key]), key


@pytest.mark.parametrize("kwargs", [{"grid": 1}, {"grid": 2.5}, {"sigma": -1}, {"sigma": float("nan")}, {"p": 2}])
def test_elastic_invalid_parameters_raise(kwargs):
    from emseg_tutorial.data.augment import Elastic

    with pytest.raises(ValueError, match="elastic"):
        Elastic(**kwargs)


def test_intensity_is_a_mild_jitter_without_blur():
    from emseg_tutorial.data.augment import INTENSITY

    assert INTENSITY.blur == 0
    for name in ("brightness", "contrast", "noise"):
        assert 0 < getattr(INTENSITY, name) <= getattr(Jitter(), name) / 2, name
    assert 1 < INTENSITY.gamma < Jitter().gamma
    x = _patches()
    y = _apply(INTENSITY, x, 0)
    assert y.shape == x.shape and y.dtype == np.float32 and not np.array_equal(y, x)
    assert np.abs(y - x).mean() < 0.1


def test_augment_names_and_errors():
    from emseg_tutorial.data.augment import AUGMENTS, INTENSITY, get_augment

    assert list(AUGMENTS) == ["none", "flips", "flips+intensity", "flips+elastic", "all"]
    assert get_augment("none").flips is False and get_augment("flips").intensity is None
    assert get_augment("all").intensity == INTENSITY and get_augment("all").elastic is not None
    with pytest.raises(ValueError, match="augment must be one of"):
        get_augment("elastic")


def _sampler(augment, seed=0, jitter=False):
    from emseg_tutorial.data.synthetic import make_volume
    from emseg_tutorial.train import TrainConfig
    from emseg_tutorial.train.supervised import training_sampler
    from emseg_tutorial.weight_schemes import weight_map_of_codes
    from emseg_tutorial.labels import for_task

    vol = make_volume("fibsem", (3, 48, 48), seed=0)
    labels = for_task(vol.labels, "multiclass")
    cfg = TrainConfig(task="multiclass", weights="entropy", steps=1, batch_size=4, patch=32, lr=1e-3, val_every=1,
                      model={}, augment=augment, jitter=jitter, seed=seed)
    return training_sampler(cfg, vol.image, labels, weight_map_of_codes(labels, "entropy"))


def test_a_config_s_augment_reaches_the_sampler():
    flips, intensity, elastic, none = (_sampler(a).sample(4) for a in ("flips", "flips+intensity", "flips+elastic",
                                                                        "none"))
    # intensity: the same crops, flips and labels; only the image changes
    assert torch.equal(intensity["target"], flips["target"]) and torch.equal(intensity["weight"], flips["weight"])
    assert not torch.equal(intensity["image"], flips["image"])
    # elastic: the same crops, deformed; label codes stay the crop's
    assert not torch.equal(elastic["target"], flips["target"])
    assert set(elastic["target"].unique().tolist()) <= set(flips["target"].unique().tolist())
    assert elastic["image"].shape == flips["image"].shape == (4, 1, 32, 32)
    assert elastic["image"].dtype == torch.float32 and elastic["target"].dtype == torch.int64
    assert elastic["image"].is_contiguous() and elastic["target"].is_contiguous()
    assert _sampler("none").augment is False and _sampler("flips").augment is True
    assert not torch.equal(none["target"], flips["target"])   # no flips or turns: other patches
    # every augmentation is drawn from the sampler's stream: the same seed, the same batches
    for augment in ("flips+intensity", "flips+elastic", "all"):
        a, b = _sampler(augment), _sampler(augment)
        for _ in range(2):
            x, y = a.sample(4), b.sample(4)
            assert all(torch.equal(x[k], y[k]) for k in x), augment


def test_the_jitter_and_the_intensity_augmentation_both_apply():
    plain, both = _sampler("flips", jitter=True).sample(4), _sampler("flips+intensity", jitter=True).sample(4)
    assert torch.equal(plain["target"], both["target"]) and not torch.equal(plain["image"], both["image"])
