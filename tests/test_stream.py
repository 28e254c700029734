"""Lazy reading and slice-by-slice writing of volumes in every format."""

import os

import h5py
import numpy as np
import pytest
import tifffile

from emseg_tutorial.data.io import VolumeError, read_image, write_volume
from emseg_tutorial.data.stream import ArrayVolume, open_volume, open_writers

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 255, (5, 20, 24), dtype=np.uint8)


def _files(tmp_path):
    write_volume(tmp_path / "v.tif", IMAGE, (30.0, 6.0, 6.0))
    tifffile.imwrite(tmp_path / "zlib.tif", IMAGE, compression="zlib", photometric="minisblack")
    tifffile.imwrite(tmp_path / "big_endian.tif", IMAGE.astype(">u2"), byteorder=">")
    write_volume(f"{tmp_path / 'v.h5'}:raw", IMAGE, (30.0, 6.0, 6.0))
    np.save(tmp_path / "v.npy", IMAGE)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(IMAGE))
    (tmp_path / "slices").mkdir()
    for z in range(5):
        tifffile.imwrite(tmp_path / "slices" / f"{z}.tif", IMAGE[z])
    return {"tif": ("v.tif", "memmap"), "zlib": ("zlib.tif", "pages"), "big_endian": ("big_endian.tif", "memmap"),
            "h5": ("v.h5:raw", "hdf5"), "npy": ("v.npy", "memmap"), "fortran": ("fortran.npy", "array"),
            "folder": ("slices", "files")}


@pytest.mark.parametrize("kind", ["tif", "zlib", "big_endian", "h5", "npy", "fortran", "folder"])
def test_lazy_reads_equal_the_whole_volume(tmp_path, kind):
    spec, method = _files(tmp_path)[kind]
    with open_volume(tmp_path / spec) as vol:
        assert vol.method == method and vol.shape == IMAGE.shape and len(vol) == 5
        whole = np.concatenate([vol.read(z, min(z + 2, 5)) for z in range(0, 5, 2)])
        np.testing.assert_array_equal(whole, IMAGE)
        assert vol.read(0, 1).dtype.isnative
        with pytest.raises(IndexError):
            vol.read(3, 9)
    if kind in ("tif", "h5"):
        assert vol.voxel_size == (30.0, 6.0, 6.0)


def test_a_2d_image_is_one_slice(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", IMAGE[0])
    with open_volume(tmp_path / "one.tif") as vol:
        assert vol.shape == (1, 20, 24)
        np.testing.assert_array_equal(vol.read(0, 1)[0], IMAGE[0])


@pytest.mark.parametrize("case, match", [("missing", "no such file"), ("suffix", "unknown format"),
                                         ("rgb", "RGB"), ("4d", "expected a 2D"), ("complex", "real numbers"),
                                         ("h5name", "name the dataset"), ("h5missing", "datasets in the file"),
                                         ("notiff", "cannot be read as a TIFF")])
def test_bad_inputs_name_the_file(tmp_path, case, match):
    spec = {"missing": tmp_path / "missing.tif", "suffix": tmp_path / "v.xyz", "rgb": tmp_path / "rgb.tif",
            "4d": tmp_path / "4d.npy", "complex": tmp_path / "c.npy", "h5name": tmp_path / "v.h5",
            "h5missing": f"{tmp_path / 'v.h5'}:nope", "notiff": tmp_path / "broken.tif"}[case]
    (tmp_path / "v.xyz").write_text("x")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    np.save(tmp_path / "4d.npy", np.zeros((2, 2, 4, 4)))
    np.save(tmp_path / "c.npy", np.zeros((2, 4, 4), complex))
    write_volume(f"{tmp_path / 'v.h5'}:raw", IMAGE)
    with pytest.raises(VolumeError, match=match) as info:
        open_volume(spec)
    assert os.fspath(spec).split(":")[0].split(os.sep)[-1] in str(info.value)


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".h5"])
def test_writers_round_trip_codes_and_probabilities(tmp_path, suffix):
    probs = RNG.random((3, 5, 20, 24)).astype(np.float32)
    codes = (probs.argmax(0) + 1).astype(np.uint8)
    name = lambda what: f"{tmp_path / ('out' + suffix)}:{what}" if suffix == ".h5" else tmp_path / f"{what}{suffix}"
    with open_writers([(name("codes"), codes.shape, np.uint8), (name("probs"), probs.shape, np.float32)],
                      voxel_size=(30.0, 6.0, 6.0)) as (wc, wp):
        for z in (0, 2, 4):
            wc.write(codes[z:z + 2])
            wp.write(probs[:, z:z + 2])
    got_codes, voxel = read_image(name("codes"))
    np.testing.assert_array_equal(got_codes, codes)
    assert voxel == ((30.0, 6.0, 6.0) if suffix != ".npy" else None)
    if suffix == ".tif":
        got = tifffile.imread(name("probs"))             # ImageJ hyperstack (Z, C, Y, X)
        np.testing.assert_array_equal(got, probs.transpose(1, 0, 2, 3))
        assert tifffile.TiffFile(name("probs")).imagej_metadata["channels"] == 3
    elif suffix == ".npy":
        np.testing.assert_array_equal(np.load(name("probs")), probs)
    else:
        with h5py.File(tmp_path / "out.h5") as f:
            np.testing.assert_array_equal(f["probs"][()], probs)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_hdf5_writer_keeps_other_datasets(tmp_path):
    write_volume(f"{tmp_path / 'v.h5'}:raw", IMAGE)
    with open_writers([(f"{tmp_path / 'v.h5'}:pred", IMAGE.shape, np.uint8)]) as (w,):
        w.write(IMAGE)
    with h5py.File(tmp_path / "v.h5") as f:
        assert sorted(f) == ["pred", "raw"]
        np.testing.assert_array_equal(f["raw"][()], IMAGE)


def test_failed_or_incomplete_writes_leave_targets_unchanged(tmp_path):
    write_volume(tmp_path / "keep.tif", IMAGE[:1])
    before = (tmp_path / "keep.tif").read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with open_writers([(tmp_path / "keep.tif", IMAGE.shape, np.uint8)]) as (w,):
            w.write(IMAGE[:2])
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="only 2 of 5"):
        with open_writers([(tmp_path / "new.npy", IMAGE.shape, np.uint8)]) as (w,):
            w.write(IMAGE[:2])
    assert (tmp_path / "keep.tif").read_bytes() == before and not (tmp_path / "new.npy").exists()
    assert sorted(os.listdir(tmp_path)) == ["keep.tif"]


def test_writer_checks_blocks(tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        with open_writers([(tmp_path / "a.npy", IMAGE.shape, np.uint8)]) as (w,):
            w.write(IMAGE[:, :10])
    with pytest.raises(VolumeError, match="unknown output format"):
        with open_writers([(tmp_path / "a.txt", IMAGE.shape, np.uint8)]):
            pass


def test_array_volume():
    vol = ArrayVolume(IMAGE[0])
    assert vol.shape == (1, 20, 24) and vol.nbytes == IMAGE[0].nbytes
