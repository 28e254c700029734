"""Volume files (data/specs, readers, tiff, outputs, writers): in-memory round trips in every format, lazy reading and
slice-by-slice writing, one stored dtype for every writer, and a clear error for every bad input."""

import os

import h5py
import numpy as np
import pytest
import tifffile

from emseg_tutorial import labels as label_codes
from emseg_tutorial._validate import InputError
from emseg_tutorial.data.errors import VolumeError
from emseg_tutorial.data.readers import ArrayVolume, open_volume, read_image, read_labels, read_volume
from emseg_tutorial.data.specs import split_spec
from emseg_tutorial.data.writers import open_writers, storage_dtype, write_volume
from emseg_tutorial.labels import check_labels

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 255, (3, 20, 24), dtype=np.uint8)
LABELS = RNG.integers(1, 5, (3, 20, 24)).astype(np.uint8)
VOXEL = (30.0, 6.0, 6.0)
STACK = RNG.integers(0, 255, (5, 20, 24), dtype=np.uint8)   # the lazy-reading tests' volume


def test_tif_round_trip_keeps_voxel_size(tmp_path):
    path = tmp_path / "img.tif"
    write_volume(path, IMAGE, VOXEL)
    data, voxel = read_image(path)
    assert np.array_equal(data, IMAGE) and voxel == VOXEL
    # Written as an ImageJ hyperstack that other tools read too.
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["spacing"] == 0.03 and tif.imagej_metadata["unit"] == "micron"


def test_tif_resolution_tags_state_the_voxel_size_in_micrometers(tmp_path):
    path = tmp_path / "img.tif"
    write_volume(path, np.zeros((2, 8, 8), np.uint8), (40.0, 5.0, 8.0))
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:  # every page, as ImageJ and other TIFF readers take it from any
            tags = page.tags
            assert tags["ResolutionUnit"].value == tifffile.RESUNIT.MICROMETER  # not INCH
            (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
            assert xn / xd == pytest.approx(1000 / 8.0) and yn / yd == pytest.approx(1000 / 5.0)  # px per µm
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.04)
    assert read_image(path)[1] == (40.0, 5.0, 8.0)


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

    monkeypatch.setattr(tifffile.TiffWriter, "write", boom)
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


# ----------------------------------------------------------------------------- lazy reading, block writing


def _files(tmp_path):
    write_volume(tmp_path / "v.tif", STACK, (30.0, 6.0, 6.0))
    tifffile.imwrite(tmp_path / "zlib.tif", STACK, compression="zlib", photometric="minisblack")
    tifffile.imwrite(tmp_path / "big_endian.tif", STACK.astype(">u2"), byteorder=">")
    write_volume(f"{tmp_path / 'v.h5'}:raw", STACK, (30.0, 6.0, 6.0))
    np.save(tmp_path / "v.npy", STACK)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(STACK))
    (tmp_path / "slices").mkdir()
    for z in range(5):
        tifffile.imwrite(tmp_path / "slices" / f"{z}.tif", STACK[z])
    return {"tif": ("v.tif", "memmap"), "zlib": ("zlib.tif", "pages"), "big_endian": ("big_endian.tif", "memmap"),
            "h5": ("v.h5:raw", "hdf5"), "npy": ("v.npy", "memmap"), "fortran": ("fortran.npy", "array"),
            "folder": ("slices", "files")}


@pytest.mark.parametrize("kind", ["tif", "zlib", "big_endian", "h5", "npy", "fortran", "folder"])
def test_lazy_reads_equal_the_whole_volume(tmp_path, kind):
    spec, method = _files(tmp_path)[kind]
    with open_volume(tmp_path / spec) as vol:
        assert vol.method == method and vol.shape == STACK.shape and len(vol) == 5
        whole = np.concatenate([vol.read(z, min(z + 2, 5)) for z in range(0, 5, 2)])
        np.testing.assert_array_equal(whole, STACK)
        assert vol.read(0, 1).dtype.isnative
        with pytest.raises(IndexError):
            vol.read(3, 9)
    if kind in ("tif", "h5"):
        assert vol.voxel_size == (30.0, 6.0, 6.0)


def test_a_2d_image_is_one_slice(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", STACK[0])
    with open_volume(tmp_path / "one.tif") as vol:
        assert vol.shape == (1, 20, 24)
        np.testing.assert_array_equal(vol.read(0, 1)[0], STACK[0])


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
    write_volume(f"{tmp_path / 'v.h5'}:raw", STACK)
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
    write_volume(f"{tmp_path / 'v.h5'}:raw", STACK)
    with open_writers([(f"{tmp_path / 'v.h5'}:pred", STACK.shape, np.uint8)]) as (w,):
        w.write(STACK)
    with h5py.File(tmp_path / "v.h5") as f:
        assert sorted(f) == ["pred", "raw"]
        np.testing.assert_array_equal(f["raw"][()], STACK)


def test_failed_or_incomplete_writes_leave_targets_unchanged(tmp_path):
    write_volume(tmp_path / "keep.tif", STACK[:1])
    before = (tmp_path / "keep.tif").read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with open_writers([(tmp_path / "keep.tif", STACK.shape, np.uint8)]) as (w,):
            w.write(STACK[:2])
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="only 2 of 5"):
        with open_writers([(tmp_path / "new.npy", STACK.shape, np.uint8)]) as (w,):
            w.write(STACK[:2])
    assert (tmp_path / "keep.tif").read_bytes() == before and not (tmp_path / "new.npy").exists()
    assert sorted(os.listdir(tmp_path)) == ["keep.tif"]


def test_writer_checks_blocks(tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        with open_writers([(tmp_path / "a.npy", STACK.shape, np.uint8)]) as (w,):
            w.write(STACK[:, :10])
    with pytest.raises(VolumeError, match="unknown output format"):
        with open_writers([(tmp_path / "a.txt", STACK.shape, np.uint8)]):
            pass


def test_array_volume():
    vol = ArrayVolume(STACK[0])
    assert vol.shape == (1, 20, 24) and vol.nbytes == STACK[0].nbytes


# ----------------------------------------------------------------------------- one stored dtype, one label check


def _spec(tmp_path, fmt, name):
    return f"{tmp_path / (name + '.h5')}:{name}" if fmt == "h5" else tmp_path / f"{name}.{fmt}"


@pytest.mark.parametrize("fmt", ["tif", "npy", "h5"])
def test_writers_store_the_same_dtype(tmp_path, fmt):
    labels = RNG.integers(0, 5, (3, 20, 24)).astype(np.int64)
    labels[0, 0, 0] = 4
    whole, blocks = _spec(tmp_path, fmt, "whole"), _spec(tmp_path, fmt, "blocks")
    write_volume(whole, labels)
    with open_writers([(blocks, labels.shape, np.int64)]) as (w,):
        for z in range(3):
            w.write(labels[z:z + 1])
    a, _ = read_image(whole)
    b, _ = read_image(blocks)
    assert a.dtype == b.dtype and a.dtype in (np.uint8, np.uint16)   # integers, never float32
    np.testing.assert_array_equal(a, labels)
    np.testing.assert_array_equal(b, labels)
    np.testing.assert_array_equal(read_labels(whole), labels)


@pytest.mark.parametrize("fmt", ["tif", "npy", "h5"])
def test_int_that_does_not_fit_float32_is_kept(tmp_path, fmt):
    big = np.array([[[0, 16777217], [3, 70000]]], np.int64)   # 2**24 + 1: float32 rounds it to 2**24
    spec = _spec(tmp_path, fmt, "ids")
    if fmt == "tif":   # ImageJ TIFF has no integer type wider than uint16: refused, not rounded
        with pytest.raises(VolumeError, match=r"ids.tif: .*do not fit uint16"):
            write_volume(spec, big)
        assert os.listdir(tmp_path) == []
    else:
        write_volume(spec, big)
        got, _ = read_image(spec)
        assert got.dtype.kind in "iu" and int(got[0, 0, 1]) == 16777217
        np.testing.assert_array_equal(got, big)
    # a block writer told only the dtype stores uint16, and refuses the block instead of wrapping it
    with pytest.raises(VolumeError, match="do not fit the stored uint16"):
        with open_writers([(_spec(tmp_path, fmt, "blocks"), big.shape, np.int64)]) as (w,):
            w.write(big)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("blocks") or p.endswith(".part")]


def test_storage_dtype_rule():
    assert storage_dtype(np.float64, "p.tif") == np.float32 and storage_dtype(np.float64, "p.npy") == np.float64
    assert storage_dtype(bool, "m.h5:m") == np.uint8 and storage_dtype(np.uint16, "a.tif") == np.uint16
    assert storage_dtype(np.int8, "a.npy", (-3, 4)) == np.int8
    with pytest.raises(VolumeError, match="cannot store dtype complex"):
        storage_dtype(np.complex64, "a.npy")


LABEL_CASES = {
    "float whole numbers": np.array([[[0.0, 1.0], [2.0, 4.0]]], np.float32),
    "float fractions": np.array([[[0.0, 1.5], [2.0, 4.0]]]),
    "negative": np.array([[[-1, 1], [2, 4]]], np.int16),
    "code 5": np.array([[[0, 5], [2, 4]]], np.uint8),
    "all zero": np.zeros((1, 2, 2), np.uint8),
    "bool": np.ones((1, 2, 2), bool),
    "1D": np.array([1, 2, 3], np.uint8),
    "2D int64": np.array([[1, 2], [3, 4]], np.int64),
    "nan": np.array([[[np.nan, 1.0]]], np.float32),
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_every_label_reader_agrees_with_check_codes(tmp_path, case):
    array = LABEL_CASES[case]
    path = tmp_path / "lab.npy"
    np.save(path, array)
    try:
        expected = label_codes.check_codes(array, "labels")
    except InputError:
        with pytest.raises(VolumeError) as info:
            read_labels(path)
        assert "lab.npy" in str(info.value) and len(str(info.value).splitlines()) == 1
        with pytest.raises(InputError):
            check_labels(array, "labels")
    else:
        got = read_labels(path)
        assert got.dtype == np.uint8 and got.ndim == 3
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)
        np.testing.assert_array_equal(check_labels(array), got)


def test_volume_error_is_an_input_error():
    assert issubclass(VolumeError, InputError) and issubclass(VolumeError, ValueError)


def test_read_region_reads_a_hyperslab(tmp_path):
    write_volume(f"{tmp_path / 'v.h5'}:raw", STACK)
    np.save(tmp_path / "v.npy", STACK)
    region = (slice(1, 4), slice(2, 12, 3), slice(5, 9))
    for spec in (f"{tmp_path / 'v.h5'}:raw", tmp_path / "v.npy"):
        with open_volume(spec) as vol:
            np.testing.assert_array_equal(vol.read_region(*region), STACK[region])
            np.testing.assert_array_equal(vol.read_region(slice(None, None, -2)), STACK[::-2])


def test_a_refused_write_of_any_file_is_one_write_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    import torch

    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.store import WriteError, atomic_write, save_checkpoint

    target = tmp_path / "note.txt"
    target.write_text("old")

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"note\.txt: could not be written \(No space left on device\); any file"):
        atomic_write(target, full)
    assert target.read_text() == "old"
    model = tmp_path / "m.pt"
    save_checkpoint(model, UNet2d(out_channels=2, depth=1, base_width=2))
    before = model.read_bytes()

    def failing_save(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos; PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(WriteError, match=r"m\.pt: could not be written"):
        save_checkpoint(model, UNet2d(out_channels=2, depth=1, base_width=2))
    assert model.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "note.txt"]
