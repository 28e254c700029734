"""Prediction on a dask cluster: equal to single-process prediction, resumable, and a clear
error when the scheduler does not answer."""

import socket
import time

import numpy as np
import pytest
import torch

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from emseg_tutorial.cli import main  # noqa: E402
from emseg_tutorial.data.readers import read_image, read_labels  # noqa: E402
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.models import UNet2d  # noqa: E402
from emseg_tutorial.predict import predict_file  # noqa: E402
from emseg_tutorial.devices import usable_cpus  # noqa: E402
from emseg_tutorial.predict.distributed import parse_cluster, predict_distributed  # noqa: E402
from emseg_tutorial.store import save_checkpoint  # noqa: E402

from helpers import tiny_unet

VOXEL = (30.0, 6.0, 6.0)




@pytest.mark.parametrize("shape,tile", [((7, 24, 24), 32), ((3, 36, 40), 32)])  # whole slices; tiled slices
def test_local_cluster_of_two_workers_equals_single_process(tmp_path, shape, tile):
    image = (np.random.default_rng(0).normal(1000, 200, shape)).astype(np.float32)  # percentile scaling
    write_volume(tmp_path / "img.zarr", image, VOXEL)
    kwargs = dict(tile=tile, overlap=8, batch_size=2)
    single = predict_file(tiny_unet(), tmp_path / "img.zarr", tmp_path / "one.zarr", f"{tmp_path / 'one_p.zarr'}:p",
                          **kwargs)
    spread = predict_distributed(tiny_unet(), tmp_path / "img.zarr", tmp_path / "two.zarr",
                                 f"{tmp_path / 'two_p.zarr'}:p", cluster="local:2", processes=False, slab=2, **kwargs)
    assert spread.normalizer == single.normalizer  # the statistics merged from the workers, bit for bit
    labels, voxel = read_image(tmp_path / "two.zarr")
    assert voxel == VOXEL and np.array_equal(labels, read_labels(tmp_path / "one.zarr"))
    p1 = zarr.open_array(str(tmp_path / "one_p.zarr" / "p" / "0"), mode="r")[:]
    p2 = zarr.open_array(str(tmp_path / "two_p.zarr" / "p" / "0"), mode="r")[:]
    np.testing.assert_allclose(p2, p1, atol=1e-6)


def test_a_finished_job_is_not_submitted_again(tmp_path):
    write_volume(tmp_path / "img.zarr", np.random.default_rng(1).integers(0, 255, (4, 16, 16), np.uint8))
    first = predict_distributed(tiny_unet(), tmp_path / "img.zarr", tmp_path / "p.zarr", cluster="local:1",
                                processes=False, tile=16, overlap=4)
    chunk = _first_chunk(tmp_path / "p.zarr" / "0")
    mtime = chunk.stat().st_mtime_ns
    predict_distributed(tiny_unet(), tmp_path / "img.zarr", tmp_path / "p.zarr", cluster="local:1", processes=False,
                        tile=16, overlap=4)
    assert chunk.stat().st_mtime_ns == mtime and first.shape == (4, 16, 16)


def _first_chunk(array_folder):
    """The first chunk file of a zarr array (``0.0.0`` in zarr format 2, ``c/0/0/0`` in 3)."""
    return min(p for p in array_folder.rglob("*") if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_line_and_exit_2_within_the_timeout(tmp_path, capsys):
    write_volume(tmp_path / "img.zarr", np.zeros((1, 16, 16), np.uint8))
    save_checkpoint(tmp_path / "m.pt", tiny_unet())
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    code = main(["predict", "--model", str(tmp_path / "m.pt"), "--image", str(tmp_path / "img.zarr"),
                 "--out", str(tmp_path / "p.zarr"), "--cluster", address, "--cluster-timeout", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and time.monotonic() - start < 20
    assert err.startswith(f"error: --cluster {address}: no dask scheduler answered within 1 s") and "\n" not in err


def test_local_workers_bounded_by_the_cores(tmp_path, capsys):
    assert parse_cluster("local:4", cores=4) == ("local", 4)
    with pytest.raises(ValueError, match=r"^--cluster local:5: local:N is at most 4, the CPU cores"):
        parse_cluster("local:5", cores=4)
    too_many = f"local:{usable_cpus() + 1}"
    write_volume(tmp_path / "img.zarr", np.zeros((1, 16, 16), np.uint8))
    save_checkpoint(tmp_path / "m.pt", tiny_unet())
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--image", str(tmp_path / "img.zarr"),
                 "--out", str(tmp_path / "p.zarr"), "--cluster", too_many, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --cluster {too_many}: local:N is at most {usable_cpus()}") and err.count("\n") == 1
    assert not (tmp_path / "p.zarr").exists()


def test_bad_cluster_arguments(tmp_path, capsys):
    for text in ("local:0", "local:x", "somewhere"):
        with pytest.raises(ValueError, match="--cluster"):
            parse_cluster(text)
    write_volume(tmp_path / "img.tif", np.zeros((1, 16, 16), np.uint8))
    save_checkpoint(tmp_path / "m.pt", tiny_unet())
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--image", str(tmp_path / "img.tif"),
                 "--out", str(tmp_path / "p.tif"), "--cluster", "local:1", "--quiet"]) == 2
    assert "writes zarr" in capsys.readouterr().err
