"""OME-Zarr volumes: lazy reading, chunked writing with the voxel size, resumed prediction."""

import os

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")

from emseg_tutorial.cli import main  # noqa: E402
from emseg_tutorial.data.errors import VolumeError  # noqa: E402
from emseg_tutorial.data.outputs import check_output_spec
from emseg_tutorial.data.readers import open_volume, read_image, read_labels, read_volume
from emseg_tutorial.data.writers import open_writers, write_volume
from emseg_tutorial.data.zarr_format import DONE_FOLDER, STATE_KEY, ZarrOutput, staging_folder  # noqa: E402
from emseg_tutorial.models import UNet2d  # noqa: E402
from emseg_tutorial.predict import predict_file, predict_probabilities  # noqa: E402
from emseg_tutorial.store import save_checkpoint  # noqa: E402

RNG = np.random.default_rng(0)
VOXEL = (30.0, 6.0, 6.0)


def _image(shape=(5, 36, 40)):
    return RNG.integers(0, 255, shape, dtype=np.uint8)


def _ngff(folder) -> dict:
    """The NGFF metadata of a zarr group: top level in 0.4, under "ome" in 0.5."""
    attrs = dict(zarr.open_group(str(folder), mode="r").attrs)
    return {**attrs, **attrs.get("ome", {})}


def _unet():
    torch.manual_seed(0)
    return UNet2d(out_channels=2, depth=2, base_width=4)


@pytest.mark.parametrize("spec", ["v.zarr", "group.zarr:raw"])
def test_round_trip_keeps_values_dtype_and_voxel_size_in_multiscales(tmp_path, spec):
    image = _image()
    write_volume(tmp_path / spec if ":" not in spec else f"{tmp_path / spec}", image, VOXEL)
    data, voxel = read_image(f"{tmp_path / spec}")
    assert voxel == VOXEL and data.dtype == np.uint8 and np.array_equal(data, image)
    folder = tmp_path / spec.replace(":", "/")
    ms = _ngff(folder)["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in ms["axes"]} == {"nanometer"}
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == list(VOXEL)
    assert zarr.open_array(str(folder / "0"), mode="r").chunks == (1, 36, 40)


def test_reading_is_lazy_and_regions_decode_only_their_chunks(tmp_path):
    image = _image((4, 30, 20))
    write_volume(tmp_path / "v.zarr", image)
    with open_volume(tmp_path / "v.zarr") as vol:
        assert vol.method == "zarr" and vol.shape == image.shape
        assert np.array_equal(vol.read(1, 3), image[1:3])
        assert np.array_equal(vol.read_region(slice(0, 4, 2), slice(3, 9), slice(None, None, 2)),
                              image[0:4:2, 3:9, ::2])


def test_probabilities_labels_and_a_plain_array_written_by_someone_else(tmp_path):
    probs = RNG.random((3, 2, 8, 8)).astype(np.float32)
    write_volume(tmp_path / "p.zarr", probs, VOXEL)
    ms = _ngff(tmp_path / "p.zarr")["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    labels = RNG.integers(1, 5, (2, 8, 8))
    write_volume(tmp_path / "l.zarr", labels)
    assert np.array_equal(read_labels(tmp_path / "l.zarr"), labels)
    plain = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(1, 3, 6, 7), chunks=(1, 1, 6, 7),
                            dtype="uint16")
    plain[:] = 7
    plain.attrs["voxel_size"] = [40.0, 4.0, 4.0]
    data, voxel = read_image(tmp_path / "plain.zarr")  # a leading axis of size 1 (t or c) is dropped
    assert data.shape == (3, 6, 7) and voxel == (40.0, 4.0, 4.0)
    assert read_volume(tmp_path / "l.zarr", tmp_path / "l.zarr").image.shape == (2, 8, 8)


def test_micrometer_and_angstrom_units_of_an_ome_zarr_are_read_as_nm(tmp_path):
    write_volume(tmp_path / "v.zarr", _image((2, 8, 8)), VOXEL)
    group = zarr.open_group(str(tmp_path / "v.zarr"), mode="r+")
    ms = _ngff(tmp_path / "v.zarr")["multiscales"]
    for unit, factor in (("micrometer", 1e-3), ("angstrom", 10.0)):
        for axis in ms[0]["axes"]:
            axis["unit"] = unit
        ms[0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [v * factor for v in VOXEL]
        ome = dict(group.attrs).get("ome")
        group.attrs.update({"ome": {**ome, "multiscales": ms}} if ome else {"multiscales": ms})
        assert read_image(tmp_path / "v.zarr")[1] == pytest.approx(VOXEL)


def test_bad_zarr_paths_give_one_line_errors(tmp_path):
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(VolumeError, match="group without an array"):
        open_volume(tmp_path / "empty.zarr")
    write_volume(f"{tmp_path / 'g.zarr'}:raw", _image((1, 8, 8)))
    with pytest.raises(VolumeError, match="no array or image 'nope'"):
        open_volume(f"{tmp_path / 'g.zarr'}:nope")
    (tmp_path / "not.zarr").mkdir()
    with pytest.raises(VolumeError, match="holds no zarr"):
        open_volume(tmp_path / "not.zarr")
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "notes.zarr" / "mine.txt").write_text("keep me")
    with pytest.raises(VolumeError, match="not a zarr"):
        check_output_spec(tmp_path / "notes.zarr")
    assert (tmp_path / "notes.zarr" / "mine.txt").exists()
    assert main(["evaluate", "--prediction", str(tmp_path / "empty.zarr"), "--labels", str(tmp_path / "empty.zarr"),
                 "--task", "boundary"]) == 2


def test_an_unfinished_write_is_refused_by_readers(tmp_path):
    spec = tmp_path / "v.zarr"
    with pytest.raises(RuntimeError):
        with open_writers([(spec, (3, 8, 8), np.uint8)]) as (w,):
            w.write(np.ones((1, 8, 8), np.uint8))
            raise RuntimeError("killed")
    with pytest.raises(VolumeError, match="incomplete"):
        open_volume(spec)


class Killed(Exception):
    pass


CALLS = {}  # forward passes per tag (a global: prediction runs a deep copy of the model)


class DiesAfter(torch.nn.Module):
    """The U-Net, but the process 'dies' after ``calls`` forward passes."""

    def __init__(self, net, calls, tag):
        super().__init__()
        self.net, self.calls, self.tag = net, calls, tag
        self.init_kwargs = net.init_kwargs
        CALLS[tag] = 0

    @property
    def seen(self):
        return CALLS[self.tag]

    def forward(self, x):
        CALLS[self.tag] += 1
        if CALLS[self.tag] > self.calls:
            raise Killed
        return self.net(x)


def test_predict_to_zarr_resumes_after_a_kill_and_redoes_unmarked_chunks(tmp_path):
    image = _image((6, 36, 40))
    write_volume(tmp_path / "img.zarr", image, VOXEL)
    out, probs = tmp_path / "pred.zarr", f"{tmp_path / 'probs.zarr'}:p"
    kwargs = dict(tile=32, overlap=8, batch_size=2)
    dying = DiesAfter(_unet(), calls=2 * 2, tag="dying")  # 4 tiles a slice, 2 per pass: dies in slice 2
    with pytest.raises(Killed):
        predict_file(dying, tmp_path / "img.zarr", out, probs, **kwargs)
    with pytest.raises(VolumeError, match="incomplete"):
        read_labels(out)
    marked = sorted(os.listdir(out / DONE_FOLDER))
    assert marked and len(marked) < 6
    # a chunk the killed run wrote but did not mark is garbage on disk: it must be redone, not trusted
    first_unmarked = max(int(m.split("-")[1]) for m in marked)
    zarr.open_array(str(out / "0"), mode="r+")[first_unmarked] = 99
    counting = DiesAfter(_unet(), calls=10**6, tag="resumed")
    predict_file(counting, tmp_path / "img.zarr", out, probs, **kwargs)
    expected = predict_probabilities(_unet(), image, **kwargs)
    assert marked == ["0-1", "1-2"] and counting.seen == 4 * 2  # only slices 2-5 were predicted again
    assert np.array_equal(read_labels(out), np.argmax(expected, 0) + 1)
    stored = zarr.open_array(str(tmp_path / "probs.zarr" / "p" / "0"), mode="r")[:]
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    assert dict(zarr.open_group(str(out), mode="r").attrs)[STATE_KEY]["complete"] is True
    again = DiesAfter(_unet(), calls=10**6, tag="again")
    predict_file(again, tmp_path / "img.zarr", out, **kwargs)  # a finished job: nothing to predict
    assert again.seen == 0


def test_cli_predicts_zarr_to_zarr(tmp_path):
    write_volume(tmp_path / "img.zarr", _image((2, 24, 24)), VOXEL)
    save_checkpoint(tmp_path / "m.pt", _unet())
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--image", str(tmp_path / "img.zarr"),
                 "--out", str(tmp_path / "pred.zarr"), "--device", "cpu", "--quiet"]) == 0
    labels, voxel = read_image(tmp_path / "pred.zarr")
    assert labels.shape == (2, 24, 24) and voxel == VOXEL


@pytest.mark.parametrize("spec", ["old.zarr", "store.zarr:pred"])
def test_replacing_a_finished_zarr_writes_beside_it_until_complete(tmp_path, spec):
    spec = os.fspath(tmp_path / spec)
    old, new = _image((3, 8, 8)), _image((3, 8, 8))
    write_volume(spec, old, VOXEL)
    target = tmp_path / "old.zarr" if spec.endswith("old.zarr") else tmp_path / "store.zarr" / "pred"
    out = ZarrOutput.create(spec, (3, 8, 8), np.uint8, VOXEL, job="new")
    assert out.folder == staging_folder(target) and out.target == target
    out.write_at(new[:1], 0)
    assert np.array_equal(read_image(spec)[0], old)  # the old image is whole while the new is written
    worker = ZarrOutput.attach(spec)  # a cluster worker writes into the same staging folder
    assert worker.folder == out.folder
    worker.write_at(new[1:2], 1)
    resumed = ZarrOutput.create(spec, (3, 8, 8), np.uint8, VOXEL, job="new")  # a rerun after a kill
    assert resumed.folder == out.folder and resumed.is_written(0, 2) and not resumed.is_written(2, 3)
    resumed.write_at(new[2:], 2)
    resumed.finish()
    assert np.array_equal(read_image(spec)[0], new)
    assert not [n for n in os.listdir(target.parent) if n.endswith((".emseg-new", ".emseg-old"))]


def test_a_new_job_over_an_unfinished_image_of_ours_restarts_in_place(tmp_path):
    spec = tmp_path / "p.zarr"
    first = ZarrOutput.create(spec, (2, 8, 8), np.uint8, VOXEL, job="a")
    first.write_at(_image((1, 8, 8)), 0)  # killed here: never data, so no reason to keep it
    second = ZarrOutput.create(spec, (2, 8, 8), np.uint8, VOXEL, job="b")
    assert second.folder == spec and not second.is_written(0, 1)
    assert not staging_folder(spec).exists()


# --------------------------------------------------------------------------- OME-Zarr as the field reads it

ome_zarr_io = pytest.importorskip("ome_zarr.io")
from ome_zarr.reader import Label, Multiscales, Reader  # noqa: E402

from emseg_tutorial.data.zarr_format import SMALLEST, downsample, pyramid_shapes  # noqa: E402

ZARR3 = int(zarr.__version__.split(".")[0]) >= 3
BIG = (2, 140, 130)  # three levels: 140 x 130, 70 x 65, 35 x 33


def _nodes(folder) -> dict:
    """ome-zarr-py's reading of a zarr: {folder name: node}, the image and its labels."""
    return {os.path.basename(str(n.zarr.path).rstrip("/")): n for n in Reader(ome_zarr_io.parse_url(str(folder)))()}


def _levels_and_scales(node) -> tuple[list, list]:
    scales = [next(t["scale"] for t in ts if t["type"] == "scale") for ts in node.metadata["coordinateTransformations"]]
    return [tuple(d.shape) for d in node.data], scales


def test_predict_writes_pyramids_that_ome_zarr_py_reads_at_every_level_with_their_scales(tmp_path):
    image = _image(BIG)
    write_volume(tmp_path / "img.zarr", image, VOXEL)
    kwargs = dict(tile=64, overlap=8, batch_size=2)
    predict_file(_unet(), tmp_path / "img.zarr", tmp_path / "pred.zarr", tmp_path / "probs.zarr", **kwargs)
    predict_file(_unet(), tmp_path / "img.zarr", f"{tmp_path / 'img.zarr'}:labels/pred", **kwargs)  # into the image
    shapes = pyramid_shapes(BIG)
    assert len(shapes) == 3 and max(shapes[-1][1:]) <= SMALLEST
    scales = [[30.0, 6.0 * 2 ** k, 6.0 * 2 ** k] for k in range(3)]
    labels = read_labels(tmp_path / "pred.zarr")
    for folder, name, channels in ((tmp_path / "pred.zarr", "pred.zarr", False),
                                   (tmp_path / "probs.zarr", "probs.zarr", True), (tmp_path / "img.zarr", "pred", False)):
        node = _nodes(folder)[name]
        levels, found = _levels_and_scales(node)
        assert levels == [((2,) if channels else ()) + s for s in shapes]
        assert found == [([1.0] if channels else []) + s for s in scales]
        assert (node.load(Label) is not None) == (not channels)  # predicted codes: an NGFF label image
        if ZARR3:  # NGFF 0.5 on zarr format 3, as ome-zarr-py writes by default
            assert _ngff(folder)["version"] == "0.5" and (folder / "zarr.json").exists()
        else:
            assert _ngff(folder)["multiscales"][0]["version"] == "0.4"
        level = np.asarray(node.data[0])
        for data in node.data[1:]:  # each level is the mode (labels) or mean (probabilities) of the one above
            level = downsample(level, labels=not channels)
            np.testing.assert_allclose(np.asarray(data), level, atol=1e-6)
    assert np.array_equal(np.asarray(_nodes(tmp_path / "img.zarr")["pred"].data[0]), labels)
    assert _ngff(tmp_path / "img.zarr" / "labels")["labels"] == ["pred"]
    assert _ngff(tmp_path / "img.zarr" / "labels" / "pred")["image-label"]["source"] == {"image": "../../"}
    assert np.array_equal(read_image(tmp_path / "img.zarr")[0], image)  # the image itself unchanged
    # our readers take any level, with that level's voxel size
    for k, shape in enumerate(shapes):
        data, voxel = read_image(f"{tmp_path / 'pred.zarr'}:{k}")
        assert data.shape == shape and voxel == tuple(scales[k])
        with open_volume(f"{tmp_path / 'img.zarr'}:labels/pred/{k}") as vol:
            assert vol.shape == shape and vol.voxel_size == tuple(scales[k])


def test_what_is_written_validates_with_ome_zarr_models(tmp_path):
    models = pytest.importorskip("ome_zarr_models")
    write_volume(tmp_path / "img.zarr", _image(BIG), VOXEL)
    predict_file(_unet(), tmp_path / "img.zarr", f"{tmp_path / 'img.zarr'}:labels/pred", tile=64, overlap=8)
    predict_file(_unet(), tmp_path / "img.zarr", tmp_path / "pred.zarr", tmp_path / "probs.zarr", tile=64, overlap=8)
    kinds = {name: type(models.open_ome_zarr(str(tmp_path / name))).__name__
             for name in ("img.zarr", "img.zarr/labels/pred", "pred.zarr", "probs.zarr")}
    assert kinds == {"img.zarr": "Image", "img.zarr/labels/pred": "ImageLabel", "pred.zarr": "ImageLabel",
                     "probs.zarr": "Image"}


def test_a_pyramid_write_resumes_at_every_level(tmp_path):
    spec, codes = tmp_path / "l.zarr", RNG.integers(1, 4, (4, 140, 130)).astype(np.uint8)
    first = ZarrOutput.create(spec, codes.shape, np.uint8, VOXEL, job="j", labels=True)
    first.write_at(codes[:2], 0)  # killed here
    resumed = ZarrOutput.create(spec, codes.shape, np.uint8, VOXEL, job="j", labels=True)
    assert resumed.is_written(0, 2) and not resumed.is_written(2, 3) and len(resumed.arrays) == 3
    ZarrOutput.attach(spec).write_at(codes[2:], 2)  # a worker writes the rest
    resumed.finish()
    assert np.array_equal(read_labels(spec), codes)
    assert np.array_equal(read_labels(f"{spec}:2"), downsample(downsample(codes, True), True))


def test_labels_of_an_image_must_match_its_full_resolution(tmp_path):
    write_volume(tmp_path / "img.zarr", _image(BIG), VOXEL)
    with pytest.raises(VolumeError, match=r"labels of the image .* must have its shape \(2, 140, 130\)"):
        predict_file(_unet(), f"{tmp_path / 'img.zarr'}:1", f"{tmp_path / 'img.zarr'}:labels/pred", tile=64,
                     overlap=8)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_pyramid_ome_zarr_py_wrote_is_read_at_every_level(tmp_path, version):
    from ome_zarr import format as ngff
    from ome_zarr.writer import write_image

    if version == "0.5" and not ZARR3:
        pytest.skip("NGFF 0.5 is zarr format 3")
    fmt = ngff.FormatV05() if version == "0.5" else ngff.FormatV04()
    image = _image(BIG)
    group = zarr.open_group(str(tmp_path / "theirs.zarr"), mode="w",
                            **({"zarr_format": fmt.zarr_format} if ZARR3 else {}))
    write_image(image, group, axes="zyx", fmt=fmt, scale_factors=[2, 4], scale={"z": 0.03, "y": 0.006, "x": 0.006},
                axes_units={a: "micrometer" for a in "zyx"})
    paths = [d["path"] for d in _ngff(tmp_path / "theirs.zarr")["multiscales"][0]["datasets"]]
    for k, factor in enumerate((1, 2, 4)):  # by level number (ome-zarr-py names them s0, s1, ...) and by path
        for spec in (f"{tmp_path / 'theirs.zarr'}:{k}", f"{tmp_path / 'theirs.zarr'}:{paths[k]}"):
            data, voxel = read_image(spec)
            assert all(abs(n - full / factor) <= 1 for n, full in zip(data.shape[1:], BIG[1:]))
            # ome-zarr-py scales a level by the exact ratio of the shapes (130 / 32 for 1/4 of 130 pixels)
            assert voxel == pytest.approx((30.0, 6.0 * BIG[1] / data.shape[1], 6.0 * BIG[2] / data.shape[2]))
    assert np.array_equal(read_image(tmp_path / "theirs.zarr")[0], image)
    # predicted labels added to their image: in its own format (a 0.4 image: NGFF 0.4 on zarr format 2)
    predict_file(_unet(), tmp_path / "theirs.zarr", f"{tmp_path / 'theirs.zarr'}:labels/pred", tile=64, overlap=8)
    node = _nodes(tmp_path / "theirs.zarr")["pred"]
    assert node.load(Label) is not None and [tuple(d.shape) for d in node.data] == pyramid_shapes(BIG)
    labels = _ngff(tmp_path / "theirs.zarr" / "labels" / "pred")
    assert labels["image-label"]["version"] == version
    assert (tmp_path / "theirs.zarr" / "labels" / "pred" / (".zattrs" if version == "0.4" else "zarr.json")).exists()


def test_an_ngff_05_input_with_zarr_2_says_what_to_install(tmp_path, monkeypatch):
    from emseg_tutorial.data import zarr_format

    write_volume(tmp_path / "v.zarr", _image((1, 8, 8)), VOXEL)
    if not (tmp_path / "v.zarr" / "zarr.json").exists():
        pytest.skip("zarr 2 writes NGFF 0.4")

    def zarr2_open(*args, **kwargs):  # what zarr 2 does with a zarr.json store
        raise ValueError("no zarr array or group")

    monkeypatch.setattr(zarr_format, "_zarr_major", lambda module: 2)
    monkeypatch.setattr(zarr, "open", zarr2_open)
    with pytest.raises(VolumeError, match=r"is zarr format 3 \(OME-Zarr 0.5\), which zarr .* cannot read; install zarr 3"):
        open_volume(tmp_path / "v.zarr")
