"""Shared fixtures: small synthetic volumes made once per test session."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("EMSEG_PRESET", "ci")


@pytest.fixture(scope="session")
def fibsem_small():
    from emseg_tutorial.data.synthetic import make_volume

    return make_volume("fibsem", (12, 128, 128), seed=0, with_cells=True)


@pytest.fixture(scope="session")
def snemi_small():
    from emseg_tutorial.data.synthetic import make_volume

    return make_volume("snemi", (12, 128, 128), seed=0, with_cells=True)


# ------------------------------------------------- adapt fixtures (helper "registry"; tests/test_adapt*.py,
# tests/test_method_registry.py): tiny source and target twins, and the same written as files for the CLI


@pytest.fixture(scope="session")
def adapt_volumes():
    """A small FIBSEM-like source (6 x 64 x 64) and SNEMI-like target (4 x 48 x 48)."""
    from emseg_tutorial.data.synthetic import make_volume

    return make_volume("fibsem", (6, 64, 64), seed=0), make_volume("snemi", (4, 48, 48), seed=1)


@pytest.fixture()
def adapt_cli_files(adapt_volumes, tmp_path, monkeypatch):
    """``adapt_volumes`` as s.tif, sl.tif (source image, labels), t.tif, tl.tif (target) and a tiny
    boundary U-Net m3.pt in ``tmp_path``; the ci preset on the CPU."""
    import torch

    from emseg_tutorial.data.formats import write_volume
    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.train import save_checkpoint

    monkeypatch.setenv("EMSEG_PRESET", "ci")
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")
    src, tgt = adapt_volumes
    for name, data in {"s.tif": src.image, "sl.tif": src.labels, "t.tif": tgt.image, "tl.tif": tgt.labels}.items():
        write_volume(tmp_path / name, data)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m3.pt", UNet2d(out_channels=2, depth=2, base_width=4))
    return tmp_path
