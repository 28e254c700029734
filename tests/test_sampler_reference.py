"""The patch sampler against the numpy reference it replaced: same batches, same distribution.

:class:`~emseg_tutorial.data.patches.PatchSampler` draws with torch on its device (the CPU
here; CUDA runs the same code). :class:`NumpyReference` and :func:`numpy_distant_slices` are
the numpy sampler and wrong-slice draw the library had before, kept here only as references.
The two use different random streams, so they are compared by what they draw (shapes, dtypes,
where crops come from, how often each flip or turn occurs, intensities), not number for number.
"""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from emseg_tutorial.data.augment import Jitter
from emseg_tutorial._validate import check_image
from emseg_tutorial.data.normalize import Normalizer
from emseg_tutorial.data.patches import PatchSampler, check_gap, distant_slices


def codes_to_index(labels: np.ndarray) -> np.ndarray:
    """The reference's class indices: ``code - 1`` (code 0, unlabelled, becomes -1)."""
    return labels.astype(np.int64) - 1

CPU = torch.device("cpu")


def numpy_distant_slices(z, depth, gap, rng):
    """The reference wrong-slice draw: a uniform partner at least ``gap`` away, with numpy."""
    check_gap(depth, gap)
    z = np.asarray(z, dtype=np.int64)
    below = np.maximum(z - gap + 1, 0)
    above = np.maximum(depth - z - gap, 0)
    u = np.floor(rng.random(z.shape) * (below + above)).astype(np.int64)
    return np.where(u < below, u, z + gap + (u - below))


class NumpyReference:
    """The reference sampler: crops, flips and turns with numpy fancy indexing and ``np.rot90``."""

    def __init__(self, image, labels=None, weights=None, patch=128, slices=None, augment=True, seed=0,
                 mismatch_gap=None):
        image = check_image(image, "image")
        self.normalizer = Normalizer.from_volume(image)
        self.unit = self.normalizer.unit(image)
        self.target = None if labels is None else codes_to_index(labels)
        self.weights = weights
        self.patch = (min(patch, image.shape[1]), min(patch, image.shape[2]))
        self.slices = np.arange(image.shape[0]) if slices is None else np.asarray(slices, dtype=int)
        self.mismatch_gap, self.augment = mismatch_gap, augment
        self.rng = np.random.default_rng(seed)

    def _crop(self, volume, z, y, x):
        py, px = self.patch
        return volume[z[:, None, None], y[:, None, None] + np.arange(py)[None, :, None],
                      x[:, None, None] + np.arange(px)[None, None, :]]

    def sample(self, batch):
        rng = self.rng
        z = rng.choice(self.slices, batch)
        y = rng.integers(0, self.unit.shape[1] - self.patch[0] + 1, batch)
        x = rng.integers(0, self.unit.shape[2] - self.patch[1] + 1, batch)
        parts = {"image": self._crop(self.unit, z, y, x)}
        if self.target is not None:
            parts["target"] = self._crop(self.target, z, y, x)
        if self.weights is not None:
            parts["weight"] = self._crop(self.weights, z, y, x)
        if self.mismatch_gap is not None:
            z_other = numpy_distant_slices(z, self.unit.shape[0], self.mismatch_gap, rng)
            parts["mismatched"] = self._crop(self.target, z_other, y, x)
        if self.augment:
            flip_y, flip_x = rng.random(batch) < 0.5, rng.random(batch) < 0.5
            turns = rng.integers(0, 4, batch) if self.patch[0] == self.patch[1] else np.zeros(batch, int)
            for key, arr in parts.items():
                arr = np.where(flip_y[:, None, None], arr[:, ::-1], arr)
                arr = np.where(flip_x[:, None, None], arr[:, :, ::-1], arr)
                parts[key] = np.stack([np.rot90(a, k) for a, k in zip(arr, turns)])
        parts["image"] = self.normalizer.standardize(parts["image"])[:, None]
        out = {k: np.ascontiguousarray(v) for k, v in parts.items()}
        out["z"] = z
        if self.mismatch_gap is not None:
            out["z_mismatched"] = z_other
        return out



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
def test_same_keys_shapes_and_dtypes_as_the_numpy_reference(gap):
    img, lab, w = _volume()
    ref = NumpyReference(img, lab, w, patch=16, seed=0, mismatch_gap=gap).sample(5)
    out = PatchSampler(img, lab, w, patch=16, seed=0, mismatch_gap=gap, device=CPU).sample(5)
    assert set(out) == set(ref)
    for key, value in out.items():
        assert isinstance(value, torch.Tensor) and value.device == CPU, key
        assert tuple(value.shape) == ref[key].shape, key
        assert value.dtype == torch.from_numpy(ref[key]).dtype, key
        assert value.is_contiguous(), key
    assert out["target"].min() >= -1 and out["target"].max() <= 3
    for kwargs in ({}, {"labels": None}):  # no weights, and an unlabelled (target) volume
        args = {"labels": lab, **kwargs}
        ref = NumpyReference(img, patch=16, **args).sample(2)
        out = PatchSampler(img, patch=16, device=CPU, **args).sample(2)
        assert set(out) == set(ref)


def test_rectangular_slices_are_clipped_and_not_turned():
    img, lab, w = _volume((3, 20, 36))
    s = PatchSampler(img, lab, w, patch=64, device=CPU)
    assert s.patch == NumpyReference(img, lab, w, patch=64).patch == (20, 36)
    assert s.sample(4)["image"].shape == (4, 1, 20, 36)


@pytest.mark.parametrize("shape, patch", [((6, 30, 30), 12), ((6, 24, 30), 64)])
def test_labels_weights_and_image_follow_the_same_pixels(shape, patch):
    """Weights name their voxel; target, image and wrong-slice labels must be those voxels'."""
    img, lab, _ = _volume(shape)
    code = _position_code(shape)
    s = PatchSampler(img, lab, code, patch=patch, seed=0, mismatch_gap=2, device=CPU)
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
    s = PatchSampler(img, lab, w, patch=16, mismatch_gap=3, jitter=Jitter(p=1.0), device=CPU)

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
    return (_draw(NumpyReference(img, lab, code, **kw), 60),
            _draw(PatchSampler(img, lab, code, device=CPU, **kw), 60))


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
    other = distant_slices(z, 12, 4, torch.Generator().manual_seed(0))
    ref = numpy_distant_slices(z.numpy(), 12, 4, np.random.default_rng(0))
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


def test_equal_to_the_reference_where_nothing_is_random():
    """One slice, whole-slice patches, no augmentation: the batches are the same numbers."""
    img, lab, w = _volume((3, 20, 20))
    kw = dict(patch=20, slices=[1], augment=False, mismatch_gap=1)
    ref = NumpyReference(img, lab, w, **kw).sample(2)
    out = PatchSampler(img, lab, w, device=CPU, **kw).sample(2)
    for key in ("image", "target", "weight", "z"):
        np.testing.assert_array_equal(out[key].numpy(), ref[key], err_msg=key)
    partners = out["z_mismatched"].numpy()
    assert set(partners.tolist()) <= {0, 2}
    np.testing.assert_array_equal(out["mismatched"].numpy(), codes_to_index(lab[partners]))
