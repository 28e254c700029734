"""Parameter explorers of chapters 1, 2 and 4: sliders in a live notebook, a plain figure elsewhere.

:func:`slice_browser` walks through a volume (chapter 1, ``book/01_data.ipynb``),
:func:`weight_map_explorer` redraws the weight maps (chapter 2, ``book/02_weight_maps.ipynb``),
:func:`ratio_weight_explorer` the class-ratio weights (chapter 4, ``book/04_experiment2.ipynb``).

Each explorer returns an :func:`ipywidgets.interactive` widget when ipywidgets is importable
*and* the code runs in a Jupyter kernel; a notebook cell that ends with the call displays it,
and moving a slider recomputes and redraws. Anywhere else (plain Python, a script, a kernel
without ipywidgets) it draws one figure at the default settings and returns it; in a kernel that
figure is closed before it is returned, so the cell shows it once (as its value), not twice.

A kernel may have nobody watching (``jupyter-book build``, nbval, nbconvert) or a viewer that
cannot draw widgets (a static page, GitHub). For those, the widget's output also carries a PNG
of the figure at the default settings: a viewer without widget support shows that picture, and
the book's ``_config.yml`` ranks the PNG above the widget view so the rendered page shows it.
Nothing here waits for input: no ``input()``, no event loop, no blocking ``show``.

``static=True``, or by default ``EMSEG_WIDGETS=static`` (read by
:func:`emseg_tutorial.session.widgets_static`), makes an explorer draw its plain figure even in
a kernel. ``make book`` sets the variable: the rendered page can only show the picture anyway, and a build that sends no
widget messages cannot meet nbclient's lost-idle-message hang after widget output
(jupyter/nbclient#312), which once stalled a book build here.

Examples
--------
>>> import matplotlib; matplotlib.use("Agg")
>>> from emseg_tutorial.data.synthetic import make_volume
>>> v = make_volume("fibsem", (3, 48, 48))
>>> type(weight_map_explorer(v.labels, v.image)).__name__  # not in a kernel: a figure
'Figure'
"""

from __future__ import annotations

import base64
import io
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from ..data.volume import Volume
from ..labels import BOUNDARY
from ..session import widgets_static
from ..style import BOOK_WIDTH
from ..weights import ratio_weight_map
from .common import LABEL_COLORS, label_legend, overlay
from .weights import paper_weight_maps_figure

__all__ = ["weight_map_explorer", "slice_browser", "ratio_weight_explorer"]


def _in_kernel() -> bool:
    """True inside a Jupyter (IPython) kernel, where widgets can be displayed."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _explore(draw: Callable, static: bool | None, **sliders: tuple[str, int, int, int, int]):
    """``interactive(draw)`` with one integer slider per keyword, or ``draw`` at the defaults.

    Each slider is ``(description, min, max, step, default)``. The widget's function shows
    the figure once and closes it, so figures neither pile up nor appear twice. ``static``
    (``None``: :func:`~emseg_tutorial.session.widgets_static`) draws the defaults even in a kernel.
    """
    defaults = {name: spec[4] for name, spec in sliders.items()}
    try:
        import ipywidgets
    except ImportError:
        return _figure(draw(**defaults))
    if static is None:
        static = widgets_static()
    if static or not _in_kernel():
        return _figure(draw(**defaults))
    from IPython.display import display

    first_png: list[str] = []

    def show(**kwargs):
        fig = draw(**kwargs)
        if not first_png:  # the figure at the defaults: interactive() draws it on creation
            first_png.append(_png(fig))
        display(fig)
        plt.close(fig)
        return fig

    controls = {name: ipywidgets.IntSlider(value=value, min=lo, max=hi, step=step,
                                           description=text, continuous_update=False,
                                           style={"description_width": "initial"})
                for name, (text, lo, hi, step, value) in sliders.items()}
    widget = _explorer_class()(show, **controls)
    widget.fallback_png = first_png[0] if first_png else ""
    return widget


def _figure(fig):
    """The plain figure an explorer returns; in a kernel it is closed first, so that only the
    cell's value shows it (an open figure would be drawn a second time by the inline backend)."""
    if _in_kernel():
        plt.close(fig)
    return fig


def _png(fig) -> str:
    """The figure as a base64-encoded PNG (the form notebook outputs store)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _explorer_class():
    """``ipywidgets.interactive`` whose display also carries a PNG of its first figure."""
    global _Explorer
    if _Explorer is None:
        import ipywidgets

        class Explorer(ipywidgets.interactive):
            """Sliders and their figure; ``image/png`` in the display stands in where widgets cannot run."""

            fallback_png = ""

            def _repr_mimebundle_(self, **kwargs):
                data = super()._repr_mimebundle_(**kwargs)
                if self.fallback_png:
                    data["image/png"] = self.fallback_png
                return data

        _Explorer = Explorer
    return _Explorer


_Explorer = None


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


def weight_map_explorer(labels: np.ndarray, image: np.ndarray | None = None, z: int | None = None, *,
                        static: bool | None = None):
    """Sliders for the entropy window and the Gaussian σ, redrawing the paper's Fig. 3.

    Parameters
    ----------
    labels : ndarray of int, (Y, X) or (Z, Y, X)
        Class codes.
    image : ndarray, same shape as ``labels``, optional
        Intensities, drawn under the labels.
    z : int, optional
        Slice of a 3D volume (default: the middle one).
    static : bool, optional
        Draw the plain figure even in a kernel (default: whether ``EMSEG_WIDGETS=static``,
        :func:`emseg_tutorial.session.widgets_static`).

    Returns
    -------
    ipywidgets.interactive or matplotlib.figure.Figure
        The widget (window side: odd, 3 to 15; σ: 1 to 20 pixels) in a Jupyter kernel with
        ipywidgets; otherwise the figure at the paper's settings (5 x 5, σ = 10), see
        :func:`emseg_tutorial.viz.weights.paper_weight_maps_figure`.
    """
    lab = _slice(labels, z, "labels")
    img = None if image is None else _slice(image, z, "image")
    return _explore(lambda size, sigma: paper_weight_maps_figure(lab, img, size, sigma, ncols=2), static,
                    size=("entropy window", 3, 15, 2, 5), sigma=("Gaussian σ (pixels)", 1, 20, 1, 10))


def slice_browser(volume: Volume, task: str = "multiclass", *, static: bool | None = None):
    """A slider over z showing each slice of ``volume`` and the slice with its labels.

    Parameters
    ----------
    volume : Volume
        Image stack, with or without labels.
    task : {"multiclass", "boundary"}, optional
        Label codes of ``volume.labels``.
    static : bool, optional
        Draw the plain figure even in a kernel (default: whether ``EMSEG_WIDGETS=static``,
        :func:`emseg_tutorial.session.widgets_static`).

    Returns
    -------
    ipywidgets.interactive or matplotlib.figure.Figure
        The widget in a Jupyter kernel with ipywidgets; otherwise the middle slice's figure.
    """
    def draw(z):
        fig, axes = plt.subplots(1, 2, figsize=(BOOK_WIDTH, 4.6), layout="constrained")
        overlay(axes[0], volume.image[z], np.zeros(volume.image[z].shape, np.uint8),  # bare image
                    title=f"{volume.name}: z = {z}")
        if volume.labels is None:
            axes[1].axis("off")
        else:
            overlay(axes[1], volume.image[z], volume.labels[z], task, title="labels")
            label_legend(fig, task)
        return fig

    depth = volume.shape[0]
    return _explore(draw, static, z=("slice z", 0, depth - 1, 1, depth // 2))


def ratio_weight_explorer(boundary: np.ndarray, image: np.ndarray | None = None, z: int | None = None, *,
                          static: bool | None = None):
    """A slider for the boundary : rest weight ratio of the paper's baselines (2:1, 5:1, 10:1).

    Parameters
    ----------
    boundary : ndarray, (Y, X) or (Z, Y, X)
        Class codes (``1`` boundary, other codes > 0 the rest, ``0`` unlabelled) or a bool mask.
    image : ndarray, same shape as ``boundary``, optional
        Intensities, drawn under the boundary pixels.
    z : int, optional
        Slice of a 3D volume (default: the middle one).
    static : bool, optional
        Draw the plain figure even in a kernel (default: whether ``EMSEG_WIDGETS=static``,
        :func:`emseg_tutorial.session.widgets_static`).

    Returns
    -------
    ipywidgets.interactive or matplotlib.figure.Figure
        The widget (ratio 1 to 20) in a Jupyter kernel with ipywidgets; otherwise the figure
        at 10:1. Panels: the slice and its :func:`~emseg_tutorial.weights.ratio_weight_map`
        (mean 1 over labelled pixels, on one colour scale for every ratio) side by side, below them the walls'
        share of a weighted-mean loss against the ratio when every pixel is equally wrong,
        ``r f / (r f + 1 - f)`` for a boundary fraction ``f``.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> codes = np.full((20, 20), 2, np.uint8); codes[:, 9:11] = 1
    >>> fig = ratio_weight_explorer(codes)  # not in a kernel: the figure at 10:1
    >>> fig.axes[2].get_title()  # 10 % boundary pixels weighted 10:1
    'walls get 53% of the loss (f = 10.0%)'

    """
    lab = _slice(boundary, z, "boundary")
    if lab.dtype == bool:
        lab = np.where(lab, BOUNDARY, BOUNDARY + 1).astype(np.uint8)
    img = None if image is None else _slice(image, z, "image")
    labelled = int((lab > 0).sum())
    if labelled == 0:
        raise ValueError("boundary holds no labelled pixel (all codes are 0)")
    f = float((lab == BOUNDARY).sum() / labelled)
    ratios = np.linspace(1, 20, 200)
    vmax = 20 / (20 * f + 1 - f) if f > 0 else 1.0  # a boundary pixel's weight at 20:1

    def draw(ratio):
        fig = plt.figure(figsize=(BOOK_WIDTH, 7.2), layout="constrained")
        grid = fig.add_gridspec(2, 2)
        axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])]
        overlay(axes[0], img if img is not None else np.zeros(lab.shape, np.uint8),
                    np.where(lab == BOUNDARY, BOUNDARY, 0).astype(np.uint8), "boundary", title="slice")
        w = ratio_weight_map(lab, ratio)
        share = ratio * f / (ratio * f + 1 - f)
        rest = 1 / (ratio * f + 1 - f)  # weights are rescaled to mean 1 over labelled pixels
        im = axes[1].imshow(w, cmap="magma", vmin=0, vmax=vmax)
        axes[1].set(xticks=[], yticks=[], title=f"{ratio}:1 weights: wall {ratio * rest:.2f}, rest {rest:.2f}")
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02)
        axes[2].plot(ratios, ratios * f / (ratios * f + 1 - f), color="0.3")
        axes[2].axhline(0.5, color="0.6", ls="--", lw=1)
        if f > 0:
            axes[2].axvline((1 - f) / f, color=LABEL_COLORS[1], ls=":", label=f"inverse frequency {(1 - f) / f:.1f}:1")
            axes[2].legend(loc="lower right")
        axes[2].plot([ratio], [share], "o", color="k")
        axes[2].set(xlabel="boundary : rest weight", ylabel="walls' share of the loss", ylim=(0, 1),
                    title=f"walls get {share:.0%} of the loss (f = {f:.1%})")
        return fig

    return _explore(draw, static, ratio=("boundary : rest", 1, 20, 1, 10))
