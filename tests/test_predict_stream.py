"""Streamed prediction: same numbers as in memory, in every format, reading one slice at a time."""

import os

import h5py
import numpy as np
import pytest
import tifffile
import torch

from emseg_tutorial.cli import main
from emseg_tutorial.data.errors import VolumeError
from emseg_tutorial.data.readers import ArrayVolume, read_image, read_labels
from emseg_tutorial.data.writers import SliceWriter, write_volume
from emseg_tutorial.data.normalize import Normalizer, intensity_limits, streaming_stats, to_unit_range, volume_stats
from emseg_tutorial.models import UNet2d
from emseg_tutorial.predict import predict_probabilities
from emseg_tutorial.predict import predict_file
from emseg_tutorial.store import save_checkpoint

RNG = np.random.default_rng(0)


def _image(shape=(4, 70, 60), dtype=np.uint8):
    if dtype == np.uint8:
        return RNG.integers(0, 255, shape, dtype=np.uint8)
    return (np.abs(RNG.normal(1000, 300, shape)) ** 1.1).astype(dtype)


def _pointwise(classes=3):
    torch.manual_seed(0)
    return torch.nn.Conv2d(1, classes, kernel_size=1)


def _unet():
    torch.manual_seed(0)
    return UNet2d(out_channels=2, depth=2, base_width=4, norm="batch")


class CountingVolume(ArrayVolume):
    """An in-memory volume that records every block of slices it is asked for."""

    def __init__(self, array):
        super().__init__(array, name="counting")
        self.requests = []

    def _read(self, z0, z1):
        self.requests.append((z0, z1))
        return super()._read(z0, z1)


def _write_input(tmp_path, fmt, image):
    spec = {"tif": tmp_path / "img.tif", "h5": f"{tmp_path / 'img.h5'}:raw", "npy": tmp_path / "img.npy",
            "zlib": tmp_path / "img_zlib.tif"}[fmt]
    if fmt == "zlib":
        tifffile.imwrite(spec, image, compression="zlib", photometric="minisblack")
    else:
        write_volume(spec, image, (30.0, 6.0, 6.0))
    return spec


def _read_probs(spec):
    path = os.fspath(spec)
    if path.endswith(".tif"):
        return tifffile.imread(path).transpose(1, 0, 2, 3)
    if ".h5:" in path:
        file, key = path.split(":")
        with h5py.File(file) as f:
            return f[key][()]
    return np.load(path)


@pytest.mark.parametrize("fmt", ["tif", "zlib", "h5", "npy"])
def test_streamed_tiles_equal_in_memory_whole_slices(tmp_path, fmt):
    # a 1x1 convolution sees one pixel: tiles, blending and streaming must not change anything
    image = _image()
    spec = _write_input(tmp_path, fmt, image)
    model = _pointwise()
    whole = predict_probabilities(model, image, tile=512)
    suffix = ".h5" if fmt == "h5" else (".npy" if fmt == "npy" else ".tif")
    out = f"{tmp_path / ('out' + suffix)}:codes" if fmt == "h5" else tmp_path / f"codes{suffix}"
    prob = f"{tmp_path / ('out' + suffix)}:probs" if fmt == "h5" else tmp_path / f"probs{suffix}"
    result = predict_file(model, spec, out, prob, tile=32, overlap=8, batch_size=3)
    assert result.shape == image.shape and result.classes == 3 and result.slices_per_read == 1
    np.testing.assert_allclose(_read_probs(prob), whole, rtol=0, atol=1e-6)
    codes, voxel = read_image(out)
    np.testing.assert_array_equal(codes, whole.argmax(0) + 1)
    assert voxel == (None if fmt in ("npy", "zlib") else (30.0, 6.0, 6.0))


@pytest.mark.parametrize("fmt", ["tif", "h5", "npy"])
@pytest.mark.parametrize("tile", [512, 32])
def test_streamed_unet_equals_in_memory_with_the_same_tiling(tmp_path, fmt, tile):
    image = _image((3, 50, 44))
    spec = _write_input(tmp_path, fmt, image)
    model = _unet()
    expected = predict_probabilities(model, image, tile=tile, overlap=8, batch_size=2)
    prob = tmp_path / "p.npy"
    predict_file(model, spec, probabilities=prob, tile=tile, overlap=8, batch_size=2)
    np.testing.assert_allclose(np.load(prob), expected, rtol=0, atol=1e-5)


def test_float_images_use_the_same_limits_and_statistics():
    image = _image((3, 30, 30), np.float32)
    stream = streaming_stats(ArrayVolume(image))
    assert stream.limits == tuple(float(v) for v in np.percentile(image, [0.5, 99.5]))   # exact: small volume
    np.testing.assert_allclose((stream.mean, stream.std), volume_stats(to_unit_range(image)), rtol=1e-6)
    np.testing.assert_allclose(stream.unit(image), to_unit_range(image), atol=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_normalizer_in_memory_equals_streaming_and_inverts(dtype):
    image = _image((4, 30, 26), dtype)
    whole, stream = Normalizer.from_volume(image), streaming_stats(ArrayVolume(image))
    assert whole.limits == stream.limits
    np.testing.assert_allclose(whole.stats, stream.stats, rtol=1e-6)
    block = image[1:3]
    np.testing.assert_array_equal(whole.unit(block), stream.unit(block))
    np.testing.assert_allclose(whole.to_unit(whole(block)), whole.unit(block), atol=1e-6)
    np.testing.assert_allclose(whole.to_unit(stream(block)), stream.unit(block), atol=1e-6)
    np.testing.assert_array_equal(whole.unit(image), to_unit_range(image))
    assert whole.stats == volume_stats(to_unit_range(image))


def test_float_volume_prediction_matches(tmp_path):
    image = _image((3, 30, 30), np.float32)
    model = _unet()
    predict_file(model, ArrayVolume(image), probabilities=tmp_path / "p.npy", tile=512)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), predict_probabilities(model, image), atol=1e-5)


def test_percentiles_from_a_strided_sample_when_large():
    image = _image((100, 20, 20), np.float32)
    vol = CountingVolume(image)
    lo, hi = intensity_limits(vol, sample_budget=4000)
    assert len(vol.requests) == 64 and all(z1 - z0 == 1 for z0, z1 in vol.requests)
    exact = np.percentile(image, [0.5, 99.5])
    assert abs(lo - exact[0]) < 0.05 * (exact[1] - exact[0]) and abs(hi - exact[1]) < 0.05 * (exact[1] - exact[0])


@pytest.mark.parametrize("shape, tile, batch, most", [((9, 70, 60), 32, 4, 1), ((9, 24, 24), 512, 4, 4)])
def test_reads_one_slice_or_one_batch_at_a_time(tmp_path, shape, tile, batch, most, monkeypatch):
    # bounded memory by structure: the reader is never asked for more than one slice (tiled) or
    # one batch of small slices, and the outputs receive blocks of the same size, in z order
    vol = CountingVolume(_image(shape))
    written = []
    original = SliceWriter.write

    def record(self, block):
        written.append((self.spec, self.written, block.shape[-3]))
        original(self, block)

    monkeypatch.setattr(SliceWriter, "write", record)
    predict_file(_pointwise(), vol, tmp_path / "c.tif", tmp_path / "p.npy", tile=tile, overlap=8, batch_size=batch)
    sizes = [z1 - z0 for z0, z1 in vol.requests]
    assert max(sizes) == most < shape[0]
    # statistics pass (one slice each) + prediction pass (blocks), each covering every slice once
    assert sum(sizes) == 2 * shape[0]
    for spec in (str(tmp_path / "c.tif"), str(tmp_path / "p.npy")):
        blocks = [(z0, n) for s, z0, n in written if s == spec]
        assert max(n for _, n in blocks) == most
        assert [z0 for z0, _ in blocks] == list(range(0, shape[0], most))


def test_nan_input_and_missing_outputs(tmp_path):
    image = _image((3, 20, 20), np.float32)
    image[1, 4, 4] = np.nan
    with pytest.raises(VolumeError, match="slice 1"):
        predict_file(_pointwise(), ArrayVolume(image), tmp_path / "c.tif")
    with pytest.raises(ValueError, match="at least one output"):
        predict_file(_pointwise(), ArrayVolume(image))
    with pytest.raises(VolumeError, match="unknown output format"):
        predict_file(_pointwise(), ArrayVolume(image), tmp_path / "c.txt")
    assert os.listdir(tmp_path) == []


def test_a_failure_mid_volume_leaves_no_output(tmp_path):
    class Breaks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.calls = torch.nn.Conv2d(1, 2, 1), 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("out of memory (simulated)")
            return self.conv(x)

    write_volume(tmp_path / "pred.tif", np.ones((1, 4, 4), np.uint8))
    before = (tmp_path / "pred.tif").read_bytes()
    with pytest.raises(RuntimeError, match="simulated"):
        predict_file(Breaks(), ArrayVolume(_image((5, 20, 20))), tmp_path / "pred.tif", batch_size=1)
    assert (tmp_path / "pred.tif").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["pred.tif"]


def test_cli_predict_streams_into_one_hdf5_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")
    image = _image((3, 40, 40))
    write_volume(f"{tmp_path / 'img.h5'}:raw", image, (30.0, 6.0, 6.0))
    model = _unet()
    save_checkpoint(tmp_path / "m.pt", model, config={"task": "boundary"})
    out, prob = f"{tmp_path / 'pred.h5'}:codes", f"{tmp_path / 'pred.h5'}:probs"
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--image", f"{tmp_path / 'img.h5'}:raw",
                 "--out", out, "--probabilities", prob, "--tile", "32", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    expected = predict_probabilities(model, image, tile=32, overlap=8)   # the CLI: min(32, tile / 4)
    with h5py.File(tmp_path / "pred.h5") as f:
        np.testing.assert_allclose(f["probs"][()], expected, atol=1e-5)
        assert tuple(f["codes"].attrs["voxel_size"]) == (30.0, 6.0, 6.0)
    np.testing.assert_array_equal(read_labels(out), expected.argmax(0) + 1)


def test_cli_predict_bad_image_is_one_line(tmp_path, capsys):
    model = _unet()
    save_checkpoint(tmp_path / "m.pt", model)
    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 4, 4), np.uint8))
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--image", str(tmp_path / "bad.npy"),
                 "--out", str(tmp_path / "p.tif"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.npy" in err and not (tmp_path / "p.tif").exists()
