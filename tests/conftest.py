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
