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
