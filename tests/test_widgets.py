"""Parameter explorers: a figure without a kernel or ipywidgets, a live widget inside one."""

import sys

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from emseg_tutorial.viz import widgets
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


def test_ratio_explorer_outside_a_kernel_draws_ten_to_one(small):
    fig = widgets.ratio_weight_explorer(small.labels, small.image)  # 4-class codes work too
    assert isinstance(fig, Figure)
    assert fig.axes[1].get_title().startswith("10:1 weights: wall")
    plt.close("all")


def test_ratio_explorer_widget_redraws(small, in_kernel):
    import ipywidgets

    w = widgets.ratio_weight_explorer(small.labels != 1, z=0)  # a bool mask: True = boundary
    assert isinstance(w, ipywidgets.Widget)
    ratio = w.children[0]
    assert (ratio.min, ratio.max, ratio.value) == (1, 20, 10)
    ratio.value = 2
    assert w.result.axes[1].get_title().startswith("2:1 weights")


def test_widget_display_carries_a_png_of_the_defaults(small, in_kernel):
    """Where widgets cannot be drawn (a static page), the display still holds a picture."""
    import base64

    w = widgets.weight_map_explorer(small.labels, small.image, z=0)
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    before = bundle["image/png"]
    w.children[0].value = 11  # moving a slider does not change the stand-in picture
    assert w._repr_mimebundle_()["image/png"] == before


def test_headless_python_draws_a_figure_without_blocking(tmp_path):
    """No display, no kernel: each explorer returns a figure promptly (a hang fails the timeout)."""
    import os
    import subprocess

    code = ("from emseg_tutorial.viz import widgets\n"
            "from emseg_tutorial.data.synthetic import make_volume\n"
            "v = make_volume('fibsem', (3, 48, 48))\n"
            "figs = [widgets.weight_map_explorer(v.labels, v.image), widgets.slice_browser(v),\n"
            "        widgets.ratio_weight_explorer(v.labels, v.image)]\n"
            "print(sorted({type(f).__name__ for f in figs}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    # the package under test, not whichever copy the interpreter would find from tmp_path
    root = os.path.abspath(os.path.join(os.path.dirname(widgets.__file__), "..", ".."))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['Figure']"


def test_headless_kernel_output_has_the_static_figure():
    """Executed by a kernel nobody watches (as `jupyter-book build` and nbval do), an explorer
    finishes at once and its output carries the PNG the static book shows."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import numpy as np\nfrom emseg_tutorial.viz import widgets\n"
        "codes = np.full((32, 32), 2, np.uint8); codes[:, 15:17] = 1\n"
        "widgets.ratio_weight_explorer(codes)")]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["execute_result"]
    assert {"image/png", "application/vnd.jupyter.widget-view+json"} <= set(outputs[0].data)


def test_static_switch_draws_a_figure_even_in_a_kernel(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from emseg_tutorial.data.synthetic import make_volume

    v = make_volume("fibsem", (3, 48, 48))
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    monkeypatch.setenv("EMSEG_WIDGETS", "static")
    assert type(widgets.weight_map_explorer(v.labels, v.image)).__name__ == "Figure"
    assert type(widgets.slice_browser(v)).__name__ == "Figure"
    plt.close("all")


def test_static_argument_overrides_the_environment(small, in_kernel, monkeypatch):
    """``static=True`` draws a figure in a kernel; ``static=False`` keeps the widget under EMSEG_WIDGETS=static."""
    import ipywidgets

    monkeypatch.delenv("EMSEG_WIDGETS", raising=False)
    assert isinstance(widgets.slice_browser(small, static=True), Figure)
    assert isinstance(widgets.ratio_weight_explorer(small.labels, static=True), Figure)
    monkeypatch.setenv("EMSEG_WIDGETS", " Static ")
    assert isinstance(widgets.weight_map_explorer(small.labels, static=False), ipywidgets.Widget)
    assert isinstance(widgets.slice_browser(small), Figure)  # None: the environment decides
    plt.close("all")


def test_the_session_is_the_one_reader_of_the_switch(monkeypatch):
    from emseg_tutorial import session

    monkeypatch.setenv("EMSEG_WIDGETS", "static")
    assert session.widgets_static()
    monkeypatch.setenv("EMSEG_WIDGETS", "live")
    assert not session.widgets_static()
    assert widgets.widgets_static is session.widgets_static


def test_static_figure_in_a_kernel_is_shown_once(small, in_kernel):
    """In a kernel the plain figure is the cell's value; left open, the inline backend would draw
    it a second time (the slice browser appeared twice in chapter 1)."""
    for fig in (widgets.slice_browser(small, static=True),
                widgets.weight_map_explorer(small.labels, small.image, static=True),
                widgets.ratio_weight_explorer(small.labels, small.image, static=True)):
        assert isinstance(fig, Figure)
        assert fig.number not in plt.get_fignums()  # closed: only the cell's value shows it
        assert fig.axes  # and it still draws
