"""PatchSampler and intensity scaling: shapes, standardisation, slice choice, flips that keep
image, labels and weights together. The sampler draws with torch on its device (the CPU here,
the same code as on CUDA); tests/test_sampler_reference.py compares it with the numpy reference."""

import numpy as np
import pytest
import torch

from emseg_tutorial.data.normalize import Normalizer, standardize, to_unit_range, volume_stats
from emseg_tutorial.data.patches import PatchSampler


def _sample(sampler, n):
    """A batch as arrays (the sampler's tensors are on the CPU here)."""
    return {k: v.numpy() for k, v in sampler.sample(n).items()}


def _blocky_labels(shape, seed=0, block=4):
    """Codes 1-4 in ``block x block`` squares: asymmetric, so every flip and turn shows."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    small = rng.integers(1, 5, (z, -(-y // block), -(-x // block)))
    return np.kron(small, np.ones((1, block, block), int))[:, :y, :x].astype(np.uint8)


def _dihedral(a):
    """The 8 flips/turns of a 2D array (the group the sampler draws from)."""
    return [np.rot90(b, k) for b in (a, a[::-1], a[:, ::-1], a[::-1, ::-1]) for k in range(4)]


# --------------------------------------------------------------------------- to_unit_range


def test_to_unit_range_uint8_divides_by_255():
    img = np.array([[0, 51, 255]], np.uint8)
    out = to_unit_range(img)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], atol=1e-7)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64, np.int32])
def test_to_unit_range_other_dtypes_use_percentiles(dtype):
    rng = np.random.default_rng(0)
    img = rng.uniform(1000, 2000, (4, 50, 50)).astype(dtype)
    img[0, 0, 0] = 60000 if dtype == np.uint16 else 1e6   # a hot pixel must not squash the rest
    out = to_unit_range(img)
    assert out.shape == img.shape
    assert out.min() == 0.0 and out.max() == 1.0
    lo, hi = np.percentile(img, [0.5, 99.5])
    np.testing.assert_allclose(out, np.clip((img.astype(np.float64) - lo) / (hi - lo), 0, 1), atol=1e-5)
    # about 0.5 % of pixels on either side are clipped, the hot pixel included
    assert out[0, 0, 0] == 1.0
    assert 0.003 < np.mean(out == 0.0) < 0.007


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_to_unit_range_other_dtypes_give_float32(dtype):
    img = np.random.default_rng(0).uniform(0, 4000, (2, 16, 16)).astype(dtype)
    assert to_unit_range(img).dtype == np.float32


def test_to_unit_range_constant_image_is_zero():
    out = to_unit_range(np.full((2, 8, 8), 700, np.uint16))
    assert out.dtype == np.float32 and not out.any()


def test_standardize_and_stats():
    unit = np.random.default_rng(1).random((3, 10, 10)).astype(np.float32)
    mean, std = volume_stats(unit)
    np.testing.assert_allclose(standardize(unit), (unit - mean) / std, rtol=1e-5)
    assert volume_stats(np.zeros((2, 4, 4)))[1] == pytest.approx(1e-3)  # no division by 0
    np.testing.assert_allclose(standardize(unit, (0.5, 2.0)), (unit - 0.5) / 2.0, rtol=1e-6)


def test_class_indices_are_codes_minus_one_and_unlabelled_is_ignored():
    lab = np.array([[[0, 1], [2, 4]]], np.uint8)
    out = PatchSampler(None, lab, patch=8, augment=False).sample(1)
    np.testing.assert_array_equal(out["target"][0].numpy(), [[-1, 0], [1, 3]])
    assert out["target"].dtype == torch.int64


def test_a_sampler_without_an_image_draws_label_maps_only():
    """The paper's discriminator reads source label maps only: no image is scaled, copied or cropped."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (4, 24, 24), dtype=np.uint8)
    lab = rng.integers(1, 3, (4, 24, 24)).astype(np.uint8)
    with_image, labels_only = PatchSampler(img, lab, patch=16, seed=3), PatchSampler(None, lab, patch=16, seed=3)
    a, b = with_image.sample(5), labels_only.sample(5)
    assert "image" not in b and labels_only.unit is None and labels_only.normalizer is None
    for key in ("target", "z"):  # the same stream: the same crops
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="needs an image, labels or both"):
        PatchSampler(None, None)


# --------------------------------------------------------------------------- PatchSampler


def test_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (3, 40, 50), dtype=np.uint8)
    lab = _blocky_labels(img.shape)
    lab[0, :5] = 0
    w = rng.random(img.shape).astype(np.float32)
    batch = PatchSampler(img, lab, w, patch=16, seed=0, mismatch_gap=1).sample(5)
    # z: the slice each patch comes from
    assert set(batch) == {"image", "target", "weight", "z", "mismatched", "z_mismatched"}
    expected = {"image": ((5, 1, 16, 16), torch.float32), "target": ((5, 16, 16), torch.int64),
                "weight": ((5, 16, 16), torch.float32), "mismatched": ((5, 16, 16), torch.int64),
                "z": ((5,), torch.int64), "z_mismatched": ((5,), torch.int64)}
    for key, (shape, dtype) in expected.items():
        value = batch[key]
        assert isinstance(value, torch.Tensor) and value.device.type == "cpu", key
        assert tuple(value.shape) == shape and value.dtype == dtype and value.is_contiguous(), key
    assert batch["target"].min() >= -1 and batch["target"].max() <= 3
    assert "weight" not in PatchSampler(img, lab, patch=16).sample(2)
    assert set(PatchSampler(img, None, patch=16).sample(2)) == {"image", "z"}


def test_same_seed_same_batches_different_seed_different():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (4, 40, 40), dtype=np.uint8)
    lab = _blocky_labels(img.shape)
    a = PatchSampler(img, lab, patch=16, seed=3).sample(4)
    b = PatchSampler(img, lab, patch=16, seed=3).sample(4)
    c = PatchSampler(img, lab, patch=16, seed=4).sample(4)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["image"], c["image"])


def test_standardised_with_the_whole_volume_stats():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (4, 32, 32), dtype=np.uint8)
    img[3] //= 4   # a dark slice that is never sampled still counts in the statistics
    lab = _blocky_labels(img.shape)
    sampler = PatchSampler(img, lab, patch=32, slices=[0], augment=False, seed=0)
    unit = img.astype(np.float32) / 255
    assert sampler.normalizer.stats == pytest.approx((unit.mean(), unit.std()), rel=1e-5)
    batch = _sample(sampler, 3)
    expected = (unit[0] - unit.mean()) / unit.std()
    for patch in batch["image"][:, 0]:
        np.testing.assert_allclose(patch, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(batch["target"], np.broadcast_to(lab[0].astype(np.int64) - 1, (3, 32, 32)))


def test_patches_come_only_from_the_given_slices():
    # slice z is constant at 20 * (z + 1), so a patch's intensity tells its slice
    img = np.stack([np.full((30, 30), 20 * (z + 1), np.uint8) for z in range(6)])
    lab = np.ones(img.shape, np.uint8)
    sampler = PatchSampler(img, lab, patch=12, slices=[1, 4], seed=0)
    mean, std = sampler.normalizer.stats
    seen = set()
    for _ in range(10):
        batch = _sample(sampler, 8)
        unit = batch["image"] * std + mean
        for p in unit[:, 0]:
            assert np.ptp(p) < 1e-5   # one slice per patch
            seen.add(int(round(float(p[0, 0]) * 255 / 20)) - 1)
    assert seen == {1, 4}


def test_random_crop_positions_cover_the_slice():
    # intensity grows along x, so the patch's left value tells its x offset
    img = np.broadcast_to(np.arange(40, dtype=np.uint8) * 5, (1, 20, 40)).copy()
    sampler = PatchSampler(img, np.ones(img.shape, np.uint8), patch=8, augment=False, seed=0)
    mean, std = sampler.normalizer.stats
    left = np.round((_sample(sampler, 200)["image"][:, 0, 0, 0] * std + mean) * 255 / 5).astype(int)
    assert left.min() == 0 and left.max() == 40 - 8   # every offset 0..32 reachable
    assert len(set(left.tolist())) > 20


def test_flips_and_turns_move_labels_and_weights_with_the_image():
    lab = _blocky_labels((1, 32, 32), seed=2)
    img = lab * 50                                    # image == labels * 50
    w = lab.astype(np.float32) * 0.5                  # weights == labels / 2
    sampler = PatchSampler(img, lab, w, patch=32, augment=True, seed=0)
    mean, std = sampler.normalizer.stats
    variants = _dihedral(lab[0].astype(np.int64) - 1)
    used = set()
    for _ in range(8):
        batch = _sample(sampler, 8)
        codes = np.rint((batch["image"][:, 0] * std + mean) * 255 / 50).astype(np.int64)
        np.testing.assert_array_equal(codes, batch["target"] + 1)
        np.testing.assert_allclose(batch["weight"], (batch["target"] + 1) * 0.5)
        for t in batch["target"]:
            matches = [i for i, v in enumerate(variants) if np.array_equal(t, v)]
            assert matches, "a patch is not a flip/turn of the slice"
            used.add(matches[0])
    # the labels have no symmetry, so the 8 transforms are distinct and all of them occur
    assert len({v.tobytes() for v in variants}) == 8
    assert len(used) == 8


def test_no_augmentation_keeps_orientation():
    lab = _blocky_labels((1, 32, 32), seed=2)
    sampler = PatchSampler(lab * 50, lab, patch=32, augment=False, seed=0)
    batch = _sample(sampler, 6)
    np.testing.assert_array_equal(batch["target"], np.broadcast_to(lab[0] - 1, (6, 32, 32)))


def test_patch_larger_than_slice_is_clipped_and_not_turned():
    lab = _blocky_labels((2, 20, 36), seed=1)
    img = lab * 50
    sampler = PatchSampler(img, lab, lab.astype(np.float32), patch=64, seed=0)
    assert sampler.patch == (20, 36)
    batch = _sample(sampler, 16)
    assert batch["image"].shape == (16, 1, 20, 36)
    assert batch["target"].shape == batch["weight"].shape == (16, 20, 36)
    mean, std = sampler.normalizer.stats
    codes = np.rint((batch["image"][:, 0] * std + mean) * 255 / 50).astype(np.int64)
    np.testing.assert_array_equal(codes, batch["target"] + 1)
    for t in batch["target"]:   # a flip of one of the two slices (no 90-degree turn on a rectangle)
        assert any(np.array_equal(t, f) for z in range(2) for f in _dihedral(lab[z] - 1.0)[::2])


def test_jitter_sees_unit_range_patches_and_its_output_is_used():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (2, 24, 24), dtype=np.uint8)
    lab = _blocky_labels(img.shape)
    calls = []

    def jitter(batch, generator):
        calls.append(batch.clone())
        assert isinstance(batch, torch.Tensor) and generator is sampler.generator
        assert batch.shape == (3, 16, 16) and batch.min() >= 0 and batch.max() <= 1
        return torch.zeros_like(batch)

    sampler = PatchSampler(img, lab, patch=16, jitter=jitter, seed=0)
    out = _sample(sampler, 3)
    assert len(calls) == 1
    mean, std = sampler.normalizer.stats
    np.testing.assert_allclose(out["image"], (0 - mean) / std, rtol=1e-6)


def test_labels_keep_ignored_pixels_as_minus_one():
    lab = np.ones((1, 16, 16), np.uint8)
    lab[0, :8] = 0
    batch = _sample(PatchSampler(np.zeros(lab.shape, np.uint8), lab, patch=16, augment=False), 1)
    assert (batch["target"][0, :8] == -1).all() and (batch["target"][0, 8:] == 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": np.ones((2, 16, 17), np.uint8)}, "labels shape"),
        ({"weights": np.ones((2, 16, 15), np.float32)}, "weights shape"),
        ({"patch": 7}, "at least 8"),
        ({"patch": 0}, "at least 8"),
        ({"slices": []}, "no slices"),
        ({"image": np.zeros((2, 3, 4, 5), np.uint8), "labels": np.ones((2, 3, 4, 5), np.uint8)}, "3D"),
        ({"image": np.full((2, 16, 16), np.nan, np.float32)}, "NaN"),
        ({"labels": np.full((2, 16, 16), 200, np.uint8)}, "codes 0..127"),
        ({"mismatch_gap": 2}, "at most 1"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    args = {"image": np.zeros((2, 16, 16), np.uint8), "labels": np.ones((2, 16, 16), np.uint8),
            "patch": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        PatchSampler(args.pop("image"), args.pop("labels"), **args)


def test_mismatch_gap_needs_labels():
    with pytest.raises(ValueError, match="needs labels"):
        PatchSampler(np.zeros((2, 16, 16), np.uint8), None, mismatch_gap=1)


def test_a_given_normalizer_is_used_instead_of_the_volume_statistics():
    img = np.random.default_rng(0).integers(0, 255, (2, 16, 16), dtype=np.uint8)
    norm = Normalizer(None, 0.25, 0.5)
    sampler = PatchSampler(img, patch=16, augment=False, slices=[0], normalizer=norm)
    assert sampler.normalizer is norm
    np.testing.assert_allclose(_sample(sampler, 1)["image"][0, 0], (img[0] / 255 - 0.25) / 0.5, atol=1e-6)


def test_state_and_set_state_continue_the_stream():
    img = np.random.default_rng(0).integers(0, 255, (4, 24, 24), dtype=np.uint8)
    from emseg_tutorial.data.augment import Jitter

    s = PatchSampler(img, _blocky_labels(img.shape), patch=16, jitter=Jitter(), mismatch_gap=2, seed=0)
    s.sample(3)
    state = s.state()
    assert state.dtype == torch.uint8 and state.device.type == "cpu"
    first = s.sample(3)
    s.sample(3)
    s.set_state(state)
    again = s.sample(3)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_a_state_of_another_device_kind_is_refused_in_one_line():
    s = PatchSampler(np.zeros((2, 16, 16), np.uint8), patch=16)
    cuda_state = torch.tensor([0, 4], dtype=torch.int64).view(torch.uint8)  # a CUDA generator's seed, offset
    with pytest.raises(ValueError, match=r"^cannot resume on cpu: the saved patch stream was drawn on cuda"):
        s.set_state(cuda_state, "cuda")
    with pytest.raises(ValueError, match="another kind of device, or by an older version"):
        s.set_state({"bit_generator": "PCG64"})  # a numpy stream of an older version
