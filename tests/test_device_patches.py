"""DevicePatchSampler: the numpy sampler's batches, drawn with torch where the network runs.

Everything runs on the CPU device here; the CUDA path is the same code on another device.
The two samplers use different random streams, so they are compared by what they draw
(shapes, dtypes, where crops come from, how often each flip or turn occurs, intensities),
not number for number.
"""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from emseg_tutorial.data import device_patches
from emseg_tutorial.data.augment import Jitter
from emseg_tutorial.data.device_patches import DevicePatchSampler, distant_slices_torch, make_sampler
from emseg_tutorial.data.patches import PatchSampler, distant_slices

CPU = torch.device("cpu")
OFF = {"brightness": 0, "contrast": 0, "gamma": 0, "blur": 0, "noise": 0}


def _blocky_labels(shape, seed=0, block=4):
    """Codes 1-4 in ``block x block`` squares: asymmetric, so every flip and turn shows."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    small = rng.integers(1, 5, (z, -(-y // block), -(-x // block)))
    return np.kron(small, np.ones((1, block, block), int))[:, :y, :x].astype(np.uint8)


def _volume(shape=(10, 40, 36), seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, shape, dtype=np.uint8)
    lab = _blocky_labels(shape, seed)
    lab[:, :3] = 0  # some ignored pixels
    w = rng.random(shape).astype(np.float32)
    return img, lab, w


def _position_code(shape):
    """Weights that name their voxel: ``z * 10000 + y * 100 + x`` (exact in float32)."""
    z, y, x = np.indices(shape)
    return (z * 10000 + y * 100 + x).astype(np.float32)


def _decode(code):
    code = np.rint(np.asarray(code)).astype(np.int64)
    return code // 10000, code // 100 % 100, code % 100


def _dihedral_index(rows, cols):
    """Which of the 8 flips/turns maps a crop's offsets ``(rows, cols)`` (from its corner) here:
    ``(transposed, row flipped, column flipped)`` of the output patch."""
    transposed = rows[0, 0] == rows[-1, 0]
    if transposed:  # rows vary along the output's columns
        return True, rows[0, 0] > rows[0, -1], cols[0, 0] > cols[-1, 0]
    return False, rows[0, 0] > rows[-1, 0], cols[0, 0] > cols[0, -1]


# --------------------------------------------------------------------------- the batch itself


@pytest.mark.parametrize("gap", [None, 3])
def test_same_keys_shapes_and_dtypes_as_the_numpy_sampler(gap):
    img, lab, w = _volume()
    ref = PatchSampler(img, lab, w, patch=16, seed=0, mismatch_gap=gap).sample(5)
    out = DevicePatchSampler(img, lab, w, patch=16, seed=0, mismatch_gap=gap, device=CPU).sample(5)
    assert set(out) == set(ref)
    for key, value in out.items():
        assert isinstance(value, torch.Tensor) and value.device == CPU, key
        assert tuple(value.shape) == ref[key].shape, key
        assert value.dtype == torch.from_numpy(ref[key]).dtype, key
        assert value.is_contiguous(), key
    assert out["target"].min() >= -1 and out["target"].max() <= 3
    for kwargs in ({}, {"labels": None}):  # no weights, and an unlabelled (target) volume
        args = {"labels": lab, **kwargs}
        ref = PatchSampler(img, patch=16, **args).sample(2)
        out = DevicePatchSampler(img, patch=16, device=CPU, **args).sample(2)
        assert set(out) == set(ref)


def test_rectangular_slices_are_clipped_and_not_turned():
    img, lab, w = _volume((3, 20, 36))
    s = DevicePatchSampler(img, lab, w, patch=64, device=CPU)
    assert s.patch == PatchSampler(img, lab, w, patch=64).patch == (20, 36)
    assert s.sample(4)["image"].shape == (4, 1, 20, 36)


def test_reproducible_for_a_seed_and_different_for_another():
    img, lab, w = _volume()
    kw = dict(patch=16, mismatch_gap=3, jitter=Jitter(), device=CPU)
    a = DevicePatchSampler(img, lab, w, seed=3, **kw).sample(6)
    b = DevicePatchSampler(img, lab, w, seed=3, **kw).sample(6)
    c = DevicePatchSampler(img, lab, w, seed=4, **kw).sample(6)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["image"], c["image"])


def test_state_and_set_state_continue_the_stream():
    img, lab, w = _volume()
    s = DevicePatchSampler(img, lab, w, patch=16, jitter=Jitter(), seed=0, device=CPU)
    s.sample(3)
    state = s.state()
    first = s.sample(3)
    s.sample(3)
    s.set_state(state)
    again = s.sample(3)
    assert all(torch.equal(first[k], again[k]) for k in first)
    n = PatchSampler(img, lab, w, patch=16, seed=0)  # the numpy sampler has the same pair
    state = n.state()
    first = n.sample(2)
    n.set_state(state)
    assert all(np.array_equal(first[k], v) for k, v in n.sample(2).items())


@pytest.mark.parametrize("shape, patch", [((6, 30, 30), 12), ((6, 24, 30), 64)])
def test_labels_weights_and_image_follow_the_same_pixels(shape, patch):
    """Weights name their voxel; target, image and wrong-slice labels must be those voxels'."""
    img, lab, _ = _volume(shape)
    code = _position_code(shape)
    s = DevicePatchSampler(img, lab, code, patch=patch, seed=0, mismatch_gap=2, device=CPU)
    unit = s.normalizer.standardize(s.normalizer.unit(img))
    seen = set()
    for _ in range(10):
        b = {k: v.numpy() for k, v in s.sample(16).items()}
        zz, yy, xx = _decode(b["weight"])
        assert np.all(zz == b["z"][:, None, None])                       # one slice per patch, z says which
        np.testing.assert_array_equal(b["target"], lab[zz, yy, xx].astype(np.int64) - 1)
        np.testing.assert_allclose(b["image"][:, 0], unit[zz, yy, xx], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(b["mismatched"],
                                      lab[b["z_mismatched"][:, None, None], yy, xx].astype(np.int64) - 1)
        for i in range(len(zz)):  # each patch is a flip/turn of one crop of the slice
            y0, x0 = yy[i].min(), xx[i].min()
            py, px = s.patch
            crop = code[b["z"][i], y0:y0 + py, x0:x0 + px]
            variants = [np.rot90(v, k) for v in (crop, crop[::-1], crop[:, ::-1], crop[::-1, ::-1])
                        for k in (range(4) if py == px else [0])]
            match = [j for j, v in enumerate(variants) if v.shape == b["weight"][i].shape
                     and np.array_equal(v, b["weight"][i])]
            assert match, "a patch is not a flip or turn of a crop"
            seen.add(_dihedral_index(yy[i] - y0, xx[i] - x0))
    assert len(seen) == (8 if shape[1] == shape[2] and patch <= shape[1] else 4)


def test_no_augmentation_keeps_orientation():
    lab = _blocky_labels((1, 32, 32), seed=2)
    b = DevicePatchSampler(lab * 50, lab, patch=32, augment=False, device=CPU).sample(6)
    np.testing.assert_array_equal(b["target"].numpy(), np.broadcast_to(lab[0] - 1, (6, 32, 32)))


def test_jitter_callable_sees_unit_range_tensors_and_its_output_is_used():
    img, lab, _ = _volume((2, 24, 24))
    calls = []

    def jitter(batch, generator):
        calls.append(batch)
        assert isinstance(batch, torch.Tensor) and isinstance(generator, torch.Generator)
        assert batch.shape == (3, 16, 16) and batch.min() >= 0 and batch.max() <= 1
        return torch.zeros_like(batch)

    s = DevicePatchSampler(img, lab, patch=16, jitter=jitter, device=CPU)
    out = s.sample(3)
    mean, std = s.normalizer.stats
    assert len(calls) == 1
    np.testing.assert_allclose(out["image"].numpy(), (0 - mean) / std, rtol=1e-6)


def test_same_checks_as_the_numpy_sampler():
    img, lab, _ = _volume((2, 16, 16))
    with pytest.raises(ValueError, match="at least 8"):
        DevicePatchSampler(img, lab, patch=4, device=CPU)
    with pytest.raises(ValueError, match="needs labels"):
        DevicePatchSampler(img, None, mismatch_gap=1, device=CPU)
    with pytest.raises(ValueError, match="at most 1"):
        distant_slices_torch(torch.tensor([0]), 2, 2, torch.Generator())


# --------------------------------------------------------------------------- no host sync


class _NoHostSync(TorchDispatchMode):
    """Fails on any op that makes the host wait for the device: reading a value
    (``.item()``, ``float()``, ``bool()``) or an output whose shape depends on values."""

    SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "repeat_interleave")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in self.SYNCING:
            raise AssertionError(f"host sync in sampling: {func}")
        return func(*args, **(kwargs or {}))


def test_sampling_never_reads_values_back_to_the_host(monkeypatch):
    img, lab, w = _volume()
    s = DevicePatchSampler(img, lab, w, patch=16, mismatch_gap=3, jitter=Jitter(p=1.0), device=CPU)

    def refuse(name):
        def method(*args, **kwargs):
            raise AssertionError(f"host copy in sampling: Tensor.{name}")
        return method

    for name in ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, refuse(name))
    with _NoHostSync():
        batch = s.sample(4)
    monkeypatch.undo()
    assert all(isinstance(v, torch.Tensor) and v.device == s.device for v in batch.values())


# --------------------------------------------------------------------------- same distribution


def _draw(sampler, n_batches, batch=50):
    out = [sampler.sample(batch) for _ in range(n_batches)]
    return {k: np.concatenate([np.asarray(b[k]) for b in out]) for k in out[0]}


@pytest.fixture(scope="module")
def both():
    """Many patches from each sampler: 12-slice volume, patches from 4 slices, weights name voxels."""
    shape = (12, 30, 30)
    img, lab, _ = _volume(shape)
    kw = dict(patch=10, slices=[1, 4, 5, 9], seed=0, mismatch_gap=4)
    code = _position_code(shape)
    return (_draw(PatchSampler(img, lab, code, **kw), 60),
            _draw(DevicePatchSampler(img, lab, code, device=CPU, **kw), 60))


def _close(a, b, tol):
    assert abs(a - b) <= tol, (a, b)


def test_slice_histogram_matches(both):
    for b in both:  # 3000 patches: each of the 4 slices 1/4 of the time (sd ~0.008)
        freq = np.array([np.mean(b["z"] == z) for z in (1, 4, 5, 9)])
        np.testing.assert_allclose(freq, 0.25, atol=0.035)
        assert set(np.unique(b["z"])) == {1, 4, 5, 9}


def test_crop_corners_cover_the_same_range(both):
    for b in both:
        _, yy, xx = _decode(b["weight"])
        for corner in (yy.min(axis=(1, 2)), xx.min(axis=(1, 2))):
            assert corner.min() == 0 and corner.max() == 30 - 10
            assert len(np.unique(corner)) == 21                      # every corner reachable
            _close(corner.mean(), 10.0, 0.5)                          # uniform: mean 10, sd of mean ~0.11
            _close(corner.std(), np.sqrt((21 ** 2 - 1) / 12), 0.4)


def test_flip_and_turn_frequencies_match(both):
    for b in both:
        _, yy, xx = _decode(b["weight"])
        kinds = [_dihedral_index(y - y.min(), x - x.min()) for y, x in zip(yy, xx)]
        transposed, flip_rows, flip_cols = (np.mean([k[i] for k in kinds]) for i in range(3))
        for f in (transposed, flip_rows, flip_cols):  # each 1/2 (odd turns, and flips of the output)
            _close(f, 0.5, 0.04)
        counts = np.unique([str(k) for k in kinds], return_counts=True)[1]
        assert len(counts) == 8
        np.testing.assert_allclose(counts / len(kinds), 1 / 8, atol=0.03)   # the 8 flips/turns evenly


def test_wrong_slice_partners_keep_the_gap_and_are_uniform(both):
    for b in both:
        assert np.all(np.abs(b["z_mismatched"] - b["z"]) >= 4)
    z = torch.repeat_interleave(torch.arange(12), 600)
    other = distant_slices_torch(z, 12, 4, torch.Generator().manual_seed(0))
    ref = distant_slices(z.numpy(), 12, 4, np.random.default_rng(0))
    for zi in range(12):
        allowed = [o for o in range(12) if abs(o - zi) >= 4]
        for draws in (other[z == zi].numpy(), ref[z.numpy() == zi]):
            freq = np.array([np.mean(draws == o) for o in allowed])
            assert set(np.unique(draws)) == set(allowed)
            np.testing.assert_allclose(freq, 1 / len(allowed), atol=0.07)


def test_standardised_intensities_match_without_jitter(both):
    ref, dev = both
    _close(dev["image"].mean(), ref["image"].mean(), 0.05)
    _close(dev["image"].std(), ref["image"].std(), 0.03)
    _close(np.mean(dev["target"] == -1), np.mean(ref["target"] == -1), 0.02)


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
    {**OFF, "noise": 0.08}, {**OFF, "brightness": 0.15, "p": 0.5}, {},
], ids=["brightness", "contrast", "gamma", "blur", "noise", "p0.5", "default"])
def test_torch_jitter_has_the_numpy_jitters_effect_sizes(params):
    jitter = Jitter(**params)
    rng = np.random.default_rng(0)
    x = (0.25 + 0.5 * rng.random((1500, 12, 12))).astype(np.float32)
    ref = _jitter_effects(x, jitter(x, np.random.default_rng(1)))
    out = jitter.apply_torch(torch.from_numpy(x), torch.Generator().manual_seed(1))
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert 0 <= out.min() and out.max() <= 1
    dev = _jitter_effects(x, out.numpy())
    for key in ref:  # 1500 patches: a few standard errors of each statistic
        _close(dev[key], ref[key], 0.05 * max(1.0, abs(ref[key])))


def test_jittered_batches_match_through_the_samplers():
    img, lab, _ = _volume((6, 32, 32))
    kw = dict(patch=16, jitter=Jitter(), seed=0)
    ref = _draw(PatchSampler(img, lab, **kw), 30)["image"]
    dev = _draw(DevicePatchSampler(img, lab, device=CPU, **kw), 30)["image"]
    _close(dev.mean(), ref.mean(), 0.06)
    _close(dev.std(), ref.std(), 0.05)
    _close(dev.mean(axis=(1, 2, 3)).std(), ref.mean(axis=(1, 2, 3)).std(), 0.06)


# --------------------------------------------------------------------------- choosing a sampler


def test_make_sampler_numpy_on_cpu_device_sampler_where_asked(monkeypatch):
    img, lab, w = _volume((4, 20, 20))
    assert isinstance(make_sampler(img, lab, w, device=CPU, patch=16), PatchSampler)
    assert device_patches.samples_on_device(torch.device("cuda")) and not device_patches.samples_on_device(CPU)
    monkeypatch.setattr(device_patches, "samples_on_device", lambda device: True)
    s = make_sampler(img, lab, w, device=CPU, patch=16, seed=2, mismatch_gap=1)
    assert isinstance(s, DevicePatchSampler) and s.mismatch_gap == 1
    assert set(s.sample(2)) == {"image", "target", "weight", "mismatched", "z", "z_mismatched"}
