"""Real datasets on small made-up files in each dataset's format: label codes, loaders, real-data mode."""

import dataclasses
import io
import zipfile

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import requests
import tifffile
from skimage.segmentation import find_boundaries

from emseg_tutorial.data import registry
from emseg_tutorial.data.errors import VolumeError
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.data.real import (crop_region, load_fibsem, load_snemi, load_vnc, neuron_ids_to_codes,
                                      split_range, vnc_codes, vnc_codes_from_layers)
from emseg_tutorial.data.registry import DATASETS, DownloadError, file_sha256
from emseg_tutorial.data.sources import describe_source, load_domain, load_pair
from emseg_tutorial.presets import get_preset
from emseg_tutorial.session import from_env

RNG = np.random.default_rng(0)


def _png(array) -> bytes:
    return iio.imwrite("<bytes>", np.asarray(array, np.uint8), extension=".png")


def _tif(array) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.asarray(array))
    return buf.getvalue()


def make_vnc_zip(path, nz=4, shape=(24, 32)):
    """A zip laid out like github.com/unidesigner/groundtruth-drosophila-vnc's master archive."""
    values = np.array([0, 32, 64, 96, 128, 159, 191, 223, 255], np.uint8)
    merged = values[RNG.integers(0, len(values), (nz,) + shape)]
    raw = np.stack([np.full(shape, 10 * z, np.uint8) for z in range(nz)])
    root = "groundtruth-drosophila-vnc-master/"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(root + "README.md", "stack1 ...")
        for i in range(nz):
            z.writestr(f"{root}stack1/raw/{i:02d}.tif", _tif(raw[i]))
            z.writestr(f"{root}stack1/labels/labels{i:08d}.png", _png(merged[i]))
            z.writestr(f"{root}stack1/membranes/{i:02d}.png", _png(merged[i] <= 128))
            z.writestr(f"{root}stack2/raw/{i:02d}.tif", _tif(raw[i] + 1))
    return raw, merged


def make_snemi_h5(path, shape=(8, 40, 48)):
    ids = np.zeros(shape, np.uint32)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for z in range(shape[0]):
        ids[z] = 1 + (yy // 10 + z % 2) * 7 + xx // 12       # blocks that shift with z
    ids[:, :3, :3] = 0                                        # a corner with no neuron
    raw = RNG.integers(0, 255, shape, dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = raw
        f["volumes/labels/neuron_ids"] = ids
    return raw, ids


# --------------------------------------------------------------------------- label mappings


def test_vnc_codes_follow_the_readme():
    merged = np.array([[0, 32, 64, 96, 128, 159, 191, 223, 255, 17]], np.uint8)
    np.testing.assert_array_equal(vnc_codes(merged), [[1, 1, 1, 1, 1, 4, 3, 2, 2, 0]])
    rgb = np.repeat(merged[..., None], 3, axis=-1)
    np.testing.assert_array_equal(vnc_codes(rgb), vnc_codes(merged))


def test_vnc_layers_precedence():
    membrane = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    mito = np.array([1, 0, 0, 1, 1, 0, 0], bool)
    glia = np.array([1, 1, 0, 1, 0, 1, 0], bool)
    np.testing.assert_array_equal(vnc_codes_from_layers(membrane, mito, glia), [1, 1, 1, 3, 3, 4, 2])
    np.testing.assert_array_equal(vnc_codes_from_layers(membrane, mito), [1, 1, 1, 3, 3, 2, 2])
    with pytest.raises(ValueError, match="same shape"):
        vnc_codes_from_layers(membrane, mito[:3])


def test_neuron_ids_to_codes_per_slice_thick_boundaries():
    _, ids = make_snemi_h5(io.BytesIO())
    codes = neuron_ids_to_codes(ids)
    for z in range(ids.shape[0]):
        walls = find_boundaries(ids[z], mode="thick")
        np.testing.assert_array_equal(codes[z][ids[z] != 0], np.where(walls, 1, 2)[ids[z] != 0])
    assert (codes[ids == 0] == 0).all()
    # a vertical wall between ids 1 | 2 is two pixels wide, one on each side
    np.testing.assert_array_equal(neuron_ids_to_codes(np.array([[1, 1, 1, 2, 2, 2]]))[0], [[2, 2, 1, 1, 2, 2]])


# --------------------------------------------------------------------------- loaders


def test_load_vnc_zip(tmp_path):
    raw, merged = make_vnc_zip(tmp_path / "vnc.zip")
    vol = load_vnc(tmp_path / "vnc.zip")
    np.testing.assert_array_equal(vol.image, raw)               # stack1 only, in slice order
    np.testing.assert_array_equal(vol.labels, vnc_codes(merged))
    assert vol.voxel_size == DATASETS["vnc"].voxel_size


def test_load_vnc_bad_archive(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(VolumeError, match="bad.zip"):
        load_vnc(tmp_path / "bad.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("x/README.md", "")
    with pytest.raises(VolumeError, match="stack1/raw"):
        load_vnc(tmp_path / "empty.zip")


def test_load_snemi_crop_matches_the_whole(tmp_path):
    raw, ids = make_snemi_h5(tmp_path / "s.h5")
    whole = load_snemi(tmp_path / "s.h5")
    np.testing.assert_array_equal(whole.image, raw)
    np.testing.assert_array_equal(whole.labels, neuron_ids_to_codes(ids))
    region = (slice(2, 6), slice(5, 30), slice(11, 40))
    crop = load_snemi(tmp_path / "s.h5", *region)
    np.testing.assert_array_equal(crop.image, raw[region])
    np.testing.assert_array_equal(crop.labels, whole.labels[region])   # boundaries saw the context
    assert load_snemi(tmp_path / "s.h5", labels=False).labels is None


def test_load_fibsem_good_and_bad(tmp_path):
    img = RNG.integers(0, 255, (4, 16, 16), dtype=np.uint8)
    lab = RNG.integers(1, 5, (4, 16, 16)).astype(np.uint8)
    write_volume(tmp_path / "img.tif", img, (10.0, 10.0, 10.0))
    write_volume(f"{tmp_path / 'lab.h5'}:labels", lab)
    vol = load_fibsem(tmp_path / "img.tif", f"{tmp_path / 'lab.h5'}:labels")
    np.testing.assert_array_equal(vol.labels, lab)
    assert vol.voxel_size == (10.0, 10.0, 10.0) and "img.tif" in vol.name
    write_volume(tmp_path / "bad.tif", np.full((4, 16, 16), 9, np.uint8))
    with pytest.raises(VolumeError, match=r"bad\.tif.*0-4"):
        load_fibsem(tmp_path / "img.tif", tmp_path / "bad.tif")
    write_volume(tmp_path / "small.tif", lab[:, :8])
    with pytest.raises(VolumeError, match=r"small\.tif.*does not match"):
        load_fibsem(tmp_path / "img.tif", tmp_path / "small.tif")
    with pytest.raises(VolumeError, match="missing.tif"):
        load_fibsem(tmp_path / "missing.tif", tmp_path / "lab.tif")


# --------------------------------------------------------------------------- splits and real-data mode


def test_split_and_crop():
    assert split_range(20, "train") == (0, 15) and split_range(20, "test") == (15, 20)
    assert split_range(2, "test") == (1, 2) and split_range(1, "train") == (0, 1)
    z, y, x = crop_region((100, 1024, 1024), "train", (12, 128, 128))
    assert (z, y, x) == (slice(0, 12), slice(448, 576), slice(448, 576))
    assert crop_region((20, 64, 64), "train", (48, 256, 256)) == (slice(0, 15), slice(0, 64), slice(0, 64))
    with pytest.raises(ValueError, match="split"):
        split_range(10, "val")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty cache, network down, real data selected."""
    monkeypatch.setenv("EMSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EMSEG_DATA", "real")
    monkeypatch.delenv("EMSEG_FIBSEM", raising=False)
    monkeypatch.delenv("EMSEG_FIBSEM_LABELS", raising=False)

    def down(url, output_file, pooch):
        raise requests.exceptions.ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(registry, "_downloader", lambda url, progress: down)
    return tmp_path / "cache"


@pytest.mark.parametrize("domain, dataset", [("fibsem", "vnc"), ("snemi", "snemi3d")])
def test_real_mode_offline_is_one_line(offline, domain, dataset):
    with pytest.raises(DownloadError) as info:
        load_domain(domain, from_env(preset="ci"))
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(f"{dataset}:")
    assert str(offline / dataset) in msg and "EMSEG_CACHE" in msg and DATASETS[dataset].files[0].url in msg


def _pin(monkeypatch, name, path):
    """Point a registry entry's checksum at a made-up file placed in the cache."""
    entry = DATASETS[name]
    first = dataclasses.replace(entry.files[0], sha256=file_sha256(path))
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(entry, files=(first,) + entry.files[1:]))


def test_real_mode_with_cached_files(offline, monkeypatch):
    (offline / "vnc").mkdir(parents=True)
    (offline / "snemi3d").mkdir()
    vnc_zip = offline / "vnc" / "groundtruth-drosophila-vnc-master.zip"
    make_vnc_zip(vnc_zip, nz=8, shape=(160, 150))
    raw, ids = make_snemi_h5(offline / "snemi3d" / "snemi_train.h5", shape=(8, 140, 200))
    _pin(monkeypatch, "vnc", vnc_zip)
    _pin(monkeypatch, "snemi3d", offline / "snemi3d" / "snemi_train.h5")
    session = from_env(preset="ci")                      # 16 x 128 x 128 source, 12 x 128 x 128 target
    src, tgt = load_pair(session, "train")
    assert src.shape == (6, 128, 128) and set(np.unique(src.labels)) <= {0, 1, 2, 3, 4}
    assert tgt.shape == (6, 128, 128) and tgt.voxel_size == (30.0, 6.0, 6.0)
    np.testing.assert_array_equal(tgt.image, raw[:6, 6:134, 36:164])
    np.testing.assert_array_equal(tgt.labels, neuron_ids_to_codes(ids)[:6, 6:134, 36:164])
    test = load_domain("snemi", session, "test")
    np.testing.assert_array_equal(test.image, raw[6:, 6:134, 36:164])    # held-out last quarter


def test_real_mode_uses_the_users_fibsem(offline, tmp_path, monkeypatch):
    img = RNG.integers(0, 255, (8, 20, 20), dtype=np.uint8)
    lab = RNG.integers(1, 5, (8, 20, 20)).astype(np.uint8)
    write_volume(tmp_path / "f.tif", img)
    write_volume(tmp_path / "l.tif", lab)
    monkeypatch.setenv("EMSEG_FIBSEM", str(tmp_path / "f.tif"))
    with pytest.raises(ValueError, match="EMSEG_FIBSEM_LABELS"):
        load_domain("fibsem", from_env(preset="ci"))
    monkeypatch.setenv("EMSEG_FIBSEM_LABELS", str(tmp_path / "l.tif"))
    vol = load_domain("fibsem", from_env(preset="ci"), "test")                # no download needed
    np.testing.assert_array_equal(vol.image, img[6:])
    np.testing.assert_array_equal(vol.labels, lab[6:])
    text = describe_source(from_env())
    assert "f.tif" in text and "SNEMI3D" in text and "Kasthuri" in text


def test_describe_source(offline, monkeypatch):
    real = describe_source(from_env())
    assert "**real data**" in real and "Gerhard" in real and "Kasthuri" in real and "EMSEG_CACHE" in real
    assert "synthetic twins" in describe_source(get_preset("ci"))
    monkeypatch.setenv("EMSEG_DATA", "synthetic")
    assert describe_source(from_env()).startswith("The chapters use the **synthetic twins**")
