"""Without the 'scale' extra, zarr, --cluster and export fail with one line naming it."""

import sys

import numpy as np
import pytest

from emseg_tutorial.cli import main
from emseg_tutorial.data.errors import VolumeError
from emseg_tutorial.data.readers import open_volume
from emseg_tutorial.data.writers import write_volume


@pytest.fixture
def no_scale_extra(monkeypatch):
    for name in ("zarr", "distributed", "bioimageio", "bioimageio.spec"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_each_feature_names_the_extra(no_scale_extra, tmp_path, capsys):
    (tmp_path / "v.zarr").mkdir()
    with pytest.raises(VolumeError, match=r"emseg-tutorial\[scale\]"):
        open_volume(tmp_path / "v.zarr")
    with pytest.raises(VolumeError, match=r"emseg-tutorial\[scale\]"):
        write_volume(tmp_path / "w.zarr", np.zeros((1, 4, 4), np.uint8))
    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.store import save_checkpoint

    save_checkpoint(tmp_path / "m.pt", UNet2d(out_channels=2, depth=2, base_width=4))
    write_volume(tmp_path / "img.npy", np.zeros((1, 16, 16), np.uint8))
    for argv in (["export", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "pkg")],
                 ["predict", "--model", str(tmp_path / "m.pt"), "--image", str(tmp_path / "img.npy"),
                  "--out", str(tmp_path / "p.zarr"), "--cluster", "local:1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "emseg-tutorial[scale]" in err and "\n" not in err
