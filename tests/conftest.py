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
    """A :class:`~emseg_tutorial.Session` at the ``ci`` preset on the CPU, without progress bars."""
    import torch

    from emseg_tutorial.presets import get_preset
    from emseg_tutorial.session import Session

    return Session(preset=get_preset("ci"), device=torch.device("cpu"), progress=False)


@pytest.fixture(scope="session")
def ci_train_config(ci_session):
    """``ci_train_config(task="multiclass", weights="entropy", **fields)``: a ci-sized TrainConfig."""
    from emseg_tutorial.paper.stages import train_config

    def build(task="multiclass", weights="entropy", **fields):
        return train_config(ci_session.preset, task=task, weights=weights, device="cpu", **fields)

    return build


@pytest.fixture(scope="session")
def ci_adapt_config(ci_session):
    """``ci_adapt_config(method="paper", **fields)``: a ci-sized AdaptConfig on the CPU."""
    from emseg_tutorial.paper.stages import adapt_config

    def build(method="paper", **fields):
        return adapt_config(ci_session, method, **fields)

    return build


@pytest.fixture
def edit_source(monkeypatch):
    """``edit_source("emseg_tutorial.losses")``: from then on the package-source hash answers as if
    that module had been edited (every hash covering it changes, the others stay)."""
    from emseg_tutorial import _source

    real = _source.source_hash

    def edit(module: str) -> None:
        def edited(modules=None):
            touched = modules is None or module == modules or module.startswith(modules + ".")
            return "eeeeee" + real(modules)[6:] if touched else real(modules)

        monkeypatch.setattr(_source, "source_hash", edited)

    return edit
