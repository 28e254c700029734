"""Volume I/O: round trips in every format and a clear error for every bad input."""

import os

import numpy as np
import pytest
import tifffile

from emseg_tutorial.data.io import (VolumeError, check_labels, read_image, read_labels, read_volume,
                                    split_spec, write_volume)

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 255, (3, 20, 24), dtype=np.uint8)
LABELS = RNG.integers(1, 5, (3, 20, 24)).astype(np.uint8)
VOXEL = (30.0, 6.0, 6.0)


def test_tif_round_trip_keeps_voxel_size(tmp_path):
    path = tmp_path / "img.tif"
    write_volume(path, IMAGE, VOXEL)
    data, voxel = read_image(path)
    assert np.array_equal(data, IMAGE) and voxel == VOXEL
    # Written as an ImageJ hyperstack that other tools read too.
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["spacing"] == 30.0


def test_tif_without_voxel_size(tmp_path):
    path = tmp_path / "img.tif"
    write_volume(path, IMAGE)
    assert read_image(path)[1] is None


def test_float_and_2d(tmp_path):
    img = RNG.random((20, 24))
    write_volume(tmp_path / "f.tif", img)
    data, _ = read_image(tmp_path / "f.tif")
    assert data.shape == (1, 20, 24) and data.dtype == np.float32
    np.testing.assert_allclose(data[0], img, rtol=1e-6)


def test_hdf5_round_trip(tmp_path):
    pytest.importorskip("h5py")
    spec = f"{tmp_path / 'v.h5'}:raw"
    write_volume(spec, IMAGE, VOXEL)
    write_volume(f"{tmp_path / 'v.h5'}:labels", LABELS)  # second dataset keeps the first
    vol = read_volume(spec, f"{tmp_path / 'v.h5'}:labels")
    assert np.array_equal(vol.image, IMAGE) and np.array_equal(vol.labels, LABELS)
    assert vol.voxel_size == VOXEL


def test_hdf5_missing_dataset_lists_datasets(tmp_path):
    pytest.importorskip("h5py")
    write_volume(f"{tmp_path / 'v.h5'}:raw", IMAGE)
    with pytest.raises(VolumeError, match=r"v.h5: no dataset 'nope'.*raw"):
        read_image(f"{tmp_path / 'v.h5'}:nope")
    with pytest.raises(VolumeError, match="name the dataset"):
        read_image(tmp_path / "v.h5")


def test_folder_of_slices_natural_order(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(3):
        tifffile.imwrite(folder / f"s{[2, 10, 1][z]}.tif", IMAGE[z])
    data, _ = read_image(folder)
    assert np.array_equal(data, IMAGE[[2, 0, 1]])  # s1, s2, s10


def test_folder_png(tmp_path):
    from skimage.io import imsave

    folder = tmp_path / "png"
    folder.mkdir()
    for z in range(3):
        imsave(folder / f"{z}.png", IMAGE[z], check_contrast=False)
    assert np.array_equal(read_image(folder)[0], IMAGE)


def test_npy_round_trip(tmp_path):
    write_volume(tmp_path / "l.npy", LABELS)
    assert np.array_equal(read_labels(tmp_path / "l.npy"), LABELS)


def test_split_spec():
    assert split_spec("a/b.h5:grp/ds") == (split_spec("a/b.h5")[0], "grp/ds")
    assert split_spec("C.tif")[1] is None


# ----------------------------------------------------------------------------- bad input


def _tif(tmp_path, data, name="x.tif"):
    path = tmp_path / name
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros((2, 2, 3, 4), np.uint8), "expected a 2D .* or 3D"),
        (np.zeros((3, 4, 0), np.uint8), "empty"),
        (np.full((2, 3, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((2, 3, 3), np.inf, np.float32), "NaN or infinite"),
    ],
)
def test_bad_images(tmp_path, data, match):
    path = tmp_path / "bad.npy"
    np.save(path, data)
    with pytest.raises(VolumeError, match=match) as err:
        read_image(path)
    assert "bad.npy" in str(err.value)


@pytest.mark.parametrize(
    "data, match",
    [
        (np.array([[[0, 5]]], np.uint8), "codes must be 0-4.*found 5"),
        (np.array([[[1.5, 2.0]]], np.float32), "whole numbers"),
        (np.array([[[-1, 2]]], np.int16), "found -1"),
        (np.zeros((1, 2, 2), np.uint8), "every pixel is 0"),
        (np.ones((1, 2, 2), bool), "real numbers"),
    ],
)
def test_bad_labels(tmp_path, data, match):
    path = tmp_path / "lab.npy"
    np.save(path, data)
    with pytest.raises(VolumeError, match=match) as err:
        read_labels(path)
    assert "lab.npy" in str(err.value)


def test_shape_mismatch_names_both(tmp_path):
    img = _tif(tmp_path, IMAGE, "img.tif")
    lab = _tif(tmp_path, LABELS[:, :10], "lab.tif")
    with pytest.raises(VolumeError, match=r"lab.tif: shape \(3, 10, 24\) does not match .*img.tif"):
        read_volume(img, lab)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(VolumeError, match="nothere.tif: no such file"):
        read_image(tmp_path / "nothere.tif")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"this is not a tiff")
    with pytest.raises(VolumeError, match="broken.tif: cannot be read as a TIFF"):
        read_image(broken)
    odd = tmp_path / "vol.zip"
    odd.write_bytes(b"")
    with pytest.raises(VolumeError, match="unknown format"):
        read_image(odd)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VolumeError, match="holds no slices"):
        read_image(empty)


def test_folder_with_mismatched_slices(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    tifffile.imwrite(folder / "0.tif", IMAGE[0])
    tifffile.imwrite(folder / "1.tif", IMAGE[0, :5])
    with pytest.raises(VolumeError, match="1.tif: slice shape"):
        read_image(folder)


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.tif"
    write_volume(target, IMAGE)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(RuntimeError):
        write_volume(target, IMAGE[:1])
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]  # no temporary left behind


def test_write_bad_targets(tmp_path):
    with pytest.raises(VolumeError, match="unknown output format"):
        write_volume(tmp_path / "x.txt", IMAGE)
    with pytest.raises(VolumeError, match="name the dataset"):
        write_volume(tmp_path / "x.h5", IMAGE)
    with pytest.raises(VolumeError, match=r"\(Z, Y, X\) or \(C, Z, Y, X\)"):
        write_volume(tmp_path / "x.tif", np.zeros((1, 1, 1, 1, 1)))


def test_check_labels_converts_to_uint8():
    assert check_labels(np.array([[1, 2]], np.int64)).dtype == np.uint8
