"""Parameter explorers: a figure without a kernel or ipywidgets, a live widget inside one."""

import sys

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from emseg_tutorial import widgets
from emseg_tutorial.data.volume import Volume


@pytest.fixture
def small(fibsem_small):
    """A 3-slice, 64 x 64 crop: every redraw takes milliseconds."""
    return Volume(fibsem_small.image[:3, :64, :64], fibsem_small.labels[:3, :64, :64], name="crop")


@pytest.fixture
def in_kernel(monkeypatch):
    """Pretend to run in a Jupyter kernel so that the widget path is taken."""
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_without_ipywidgets_draws_the_defaults(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now fails
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    fig = widgets.weight_map_explorer(small.labels, small.image)
    assert isinstance(fig, Figure)
    assert "entropy weights (5x5)" in titles(fig) and "smoothed distance (σ=10)" in titles(fig)
    assert isinstance(widgets.slice_browser(small), Figure)
    plt.close("all")


def test_outside_a_kernel_draws_a_figure(small):
    fig = widgets.weight_map_explorer(small.labels[1])  # 2D labels, no image
    assert isinstance(fig, Figure)
    assert widgets.slice_browser(small).axes[0].get_title() == "crop: z = 1"
    plt.close("all")


def test_weight_map_explorer_widget_redraws(small, in_kernel):
    import ipywidgets

    before = plt.get_fignums()
    w = widgets.weight_map_explorer(small.labels, small.image, z=0)
    assert isinstance(w, ipywidgets.Widget)
    size, sigma = w.children[:2]
    assert (size.min, size.max, size.step, size.value) == (3, 15, 2, 5)
    assert (sigma.min, sigma.max, sigma.value) == (1, 20, 10)
    size.value, sigma.value = 9, 3  # each change redraws
    assert "entropy weights (9x9)" in titles(w.result)
    assert "smoothed distance (σ=3)" in titles(w.result)
    assert plt.get_fignums() == before  # every drawn figure was closed


def test_slice_browser_widget_redraws(small, in_kernel):
    import ipywidgets

    w = widgets.slice_browser(small)
    assert isinstance(w, ipywidgets.Widget)
    w.children[0].value = 2
    assert w.result.axes[0].get_title() == "crop: z = 2"
    unlabelled = widgets.slice_browser(Volume(small.image, name="bare"))
    unlabelled.children[0].value = 0
    assert not unlabelled.result.axes[1].axison


def test_bad_slice_is_refused(small):
    with pytest.raises(ValueError, match="z must be in 0..2"):
        widgets.weight_map_explorer(small.labels, z=3)
