"""Parameter explorers for the book: sliders in a live notebook, a plain figure elsewhere.

Each explorer returns an :func:`ipywidgets.interactive` widget when ipywidgets is importable
*and* the code runs in a Jupyter kernel that can show widgets; a notebook cell that ends with
the call displays it, and moving a slider recomputes and redraws. Anywhere else (plain Python,
a script, a kernel without ipywidgets) it draws one figure at the default settings and returns
it. Nothing here waits for input: no ``input()``, no event loop, no blocking ``show``.

Examples
--------
>>> import matplotlib; matplotlib.use("Agg")
>>> from emseg_tutorial.data.synthetic import make_volume
>>> v = make_volume("fibsem", (3, 48, 48))
>>> type(weight_map_explorer(v.labels, v.image)).__name__  # not in a kernel: a figure
'Figure'
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from . import viz
from .data.volume import Volume

__all__ = ["weight_map_explorer", "slice_browser"]


def _in_kernel() -> bool:
    """True inside a Jupyter (IPython) kernel, where widgets can be displayed."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _explore(draw: Callable, **sliders: tuple[str, int, int, int, int]):
    """``interactive(draw)`` with one integer slider per keyword, or ``draw`` at the defaults.

    Each slider is ``(description, min, max, step, default)``. The widget's function shows
    the figure once and closes it, so figures neither pile up nor appear twice.
    """
    defaults = {name: spec[4] for name, spec in sliders.items()}
    try:
        import ipywidgets
    except ImportError:
        return draw(**defaults)
    if not _in_kernel():
        return draw(**defaults)
    from IPython.display import display

    def show(**kwargs):
        fig = draw(**kwargs)
        display(fig)
        plt.close(fig)
        return fig

    controls = {name: ipywidgets.IntSlider(value=value, min=lo, max=hi, step=step,
                                           description=text, continuous_update=False,
                                           style={"description_width": "initial"})
                for name, (text, lo, hi, step, value) in sliders.items()}
    return ipywidgets.interactive(show, **controls)


def _slice(array: np.ndarray, z: int | None, name: str) -> np.ndarray:
    """Slice ``z`` (default: the middle one) of a 3D array; a 2D array is returned as is."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise ValueError(f"{name} must be 2D (Y, X) or 3D (Z, Y, X), got shape {array.shape}")
    z = array.shape[0] // 2 if z is None else z
    if not 0 <= z < array.shape[0]:
        raise ValueError(f"z must be in 0..{array.shape[0] - 1} for {name} of shape {array.shape}, got {z}")
    return array[z]


def weight_map_explorer(labels: np.ndarray, image: np.ndarray | None = None, z: int | None = None):
    """Sliders for the entropy window and the Gaussian σ, redrawing the paper's Fig. 3.

    Parameters
    ----------
    labels : ndarray of int, (Y, X) or (Z, Y, X)
        Class codes.
    image : ndarray, same shape as ``labels``, optional
        Intensities, drawn under the labels.
    z : int, optional
        Slice of a 3D volume (default: the middle one).

    Returns
    -------
    ipywidgets.interactive or matplotlib.figure.Figure
        The widget (window side: odd, 3 to 15; σ: 1 to 20 pixels) in a Jupyter kernel with
        ipywidgets; otherwise the figure at the paper's settings (5 x 5, σ = 10), see
        :func:`emseg_tutorial.viz.paper_weight_maps_figure`.
    """
    lab = _slice(labels, z, "labels")
    img = None if image is None else _slice(image, z, "image")
    return _explore(lambda size, sigma: viz.paper_weight_maps_figure(lab, img, size, sigma, ncols=2),
                    size=("entropy window", 3, 15, 2, 5), sigma=("Gaussian σ (pixels)", 1, 20, 1, 10))


def slice_browser(volume: Volume, task: str = "multiclass"):
    """A slider over z showing each slice of ``volume`` and the slice with its labels.

    Parameters
    ----------
    volume : Volume
        Image stack, with or without labels.
    task : {"multiclass", "boundary"}, optional
        Label codes of ``volume.labels``.

    Returns
    -------
    ipywidgets.interactive or matplotlib.figure.Figure
        The widget in a Jupyter kernel with ipywidgets; otherwise the middle slice's figure.
    """
    def draw(z):
        fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
        viz.overlay(axes[0], volume.image[z], np.zeros(volume.image[z].shape, np.uint8),  # bare image
                    title=f"{volume.name}: z = {z}")
        if volume.labels is None:
            axes[1].axis("off")
        else:
            viz.overlay(axes[1], volume.image[z], volume.labels[z], task, title="labels")
            viz.label_legend(axes[1], task)
        return fig

    depth = volume.shape[0]
    return _explore(draw, z=("slice z", 0, depth - 1, 1, depth // 2))
