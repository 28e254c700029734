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


# ----------------------------------------------------------------------------------------------
# Configs from a preset (issue 21, item 3: the preset builds every config). TrainConfig and
# AdaptConfig have no sizes of their own, so tests build them as the library does, through
# emseg_tutorial.paper.stages.train_config / adapt_config at the ``ci`` preset on the CPU; a
# test shrinks a size by naming it (``ci_adapt_config("paper", patch=32)``).
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ci_session():
    """A :class:`~emseg_tutorial.Session` at the ``ci`` preset on the CPU, without progress bars
    (``helpers.CI``)."""
    from helpers import CI

    return CI


@pytest.fixture(scope="session")
def ci_train_config(ci_session):
    """``ci_train_config(task="multiclass", weights="entropy", **fields)``: a ci-sized TrainConfig."""
    from emseg_tutorial.paper.stages import train_config

    def build(task="multiclass", weights="entropy", **fields):
        return train_config(ci_session.preset, task=task, weights=weights, device="cpu", **fields)

    return build


@pytest.fixture(scope="session")
def ci_adapt_config():
    """``ci_adapt_config(method="paper", **fields)``: a ci-sized AdaptConfig on the CPU (``helpers.ci_config``)."""
    from helpers import ci_config

    return ci_config


@pytest.fixture
def edit_source(monkeypatch):
    """``edit_source("emseg_tutorial.losses")``: from then on the package-source hash answers as if
    that module had been edited (every hash covering it changes, the others stay)."""
    import hashlib

    from emseg_tutorial import _source

    real = _source.source_hash

    def edit(module: str) -> None:
        def edited(modules=None):
            prefixes = () if modules is None else (modules,) if isinstance(modules, str) else modules
            touched = modules is None or any(module == p or module.startswith(p + ".") for p in prefixes)
            tag = hashlib.blake2b(module.encode(), digest_size=3).hexdigest()  # one per edited module
            return tag + real(modules)[6:] if touched else real(modules)

        monkeypatch.setattr(_source, "source_hash", edited)

    return edit


# ------------------------------------------------------------------------------------------------
# Tiny runs (block of helper "split"): the smallest model, session and volumes a test trains on.
# ------------------------------------------------------------------------------------------------
#: U-Net of the tests that train: two levels, four channels (a step takes milliseconds on a CPU).
TINY_MODEL = {"depth": 2, "base_width": 4, "norm": "batch"}


@pytest.fixture
def tiny_session(tmp_path):
    """A ``ci`` session with :data:`TINY_MODEL`, 32-pixel patches and a few steps per stage,
    keeping its runs in this test's ``tmp_path`` (nothing is shared between tests)."""
    import dataclasses

    from emseg_tutorial.presets import get_preset
    from emseg_tutorial.session import from_env

    preset = dataclasses.replace(get_preset("ci"), model=dict(TINY_MODEL), patch=32, batch_size=2,
                                 steps_per_iteration=0.025, val_every=100)
    return from_env(preset=preset, device="cpu").replace(runs=tmp_path, progress=False)


@pytest.fixture(scope="session")
def fibsem_tiny():
    """A 4 x 48 x 48 source twin (seed 0) to train on; shared by the session: do not modify it."""
    from emseg_tutorial.data.synthetic import make_volume

    return make_volume("fibsem", (4, 48, 48), seed=0)


@pytest.fixture(scope="session")
def fibsem_tiny_test():
    """Another 4 x 48 x 48 source twin (seed 1): held-out slices for the tiny runs."""
    from emseg_tutorial.data.synthetic import make_volume

    return make_volume("fibsem", (4, 48, 48), seed=1)


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

    from emseg_tutorial.data.writers import write_volume
    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.store import save_checkpoint

    monkeypatch.setenv("EMSEG_PRESET", "ci")
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")
    src, tgt = adapt_volumes
    for name, data in {"s.tif": src.image, "sl.tif": src.labels, "t.tif": tgt.image, "tl.tif": tgt.labels}.items():
        write_volume(tmp_path / name, data)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m3.pt", UNet2d(out_channels=2, depth=2, base_width=4))
    return tmp_path
