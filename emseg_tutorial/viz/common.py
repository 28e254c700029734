"""Shared drawing helpers of every chapter: grey images, label overlays, the class colours.

Nothing here is specific to one chapter; the chapter modules (:mod:`.data`, :mod:`.weights`,
:mod:`.training`, :mod:`.adaptation`, :mod:`.comparison`) and :mod:`.widgets` build on it.

Examples
--------
>>> import matplotlib; matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> fig, ax = plt.subplots()
>>> labels = np.zeros((8, 8), np.uint8); labels[:, 3] = 1
>>> overlay(ax, np.full((8, 8), 128, np.uint8), labels, title="walls")
>>> ax.get_title(), len(ax.images)
('walls', 2)
>>> moving_average([1, 2, 3, 4], 2).tolist()
[1.0, 1.5, 2.5, 3.5]
>>> fig, axes = panel_grid(5)  # rows of at most three panels, at the book's width
>>> len(axes), float(fig.get_figwidth()), readability_problems(fig)
(5, 8.0, [])
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Text

from ..labels import class_names
from ..style import BOOK_WIDTH, MAX_COLUMNS, MIN_FONT

__all__ = ["LABEL_COLORS", "label_cmap", "label_legend", "gray", "overlay", "moving_average", "panel_grid",
           "readability_problems"]

#: Largest side of one image panel, in inches (a grid of few panels is narrower than the book).
PANEL = 3.2

#: Colour of every label code (0 unlabelled is transparent in overlays).
LABEL_COLORS = {0: (0, 0, 0, 0), 1: "#ffb000", 2: "#1f9e89", 3: "#e7298a", 4: "#7570b3"}


def label_cmap(task: str = "multiclass") -> ListedColormap:
    """Colormap indexed by label code (0 transparent).

    Parameters
    ----------
    task : {"multiclass", "boundary"}, optional
        Which label codes (:func:`~emseg_tutorial.labels.class_names`).

    Returns
    -------
    matplotlib.colors.ListedColormap
    """
    n = max(class_names(task)) + 1
    colors = [LABEL_COLORS[c] for c in range(n)]
    if task == "boundary":
        colors[2] = LABEL_COLORS[2]
    return ListedColormap(colors)


def label_legend(where, task: str = "multiclass", **kwargs) -> None:
    """Add a legend of the label colours to an axes, or below a whole figure.

    Parameters
    ----------
    where : matplotlib.axes.Axes or matplotlib.figure.Figure
        An axes gets the legend inside (default: lower right); a figure gets it once, below its
        panels in one row (constrained layout makes room for it).
    task : {"multiclass", "boundary"}, optional
        Which label codes.
    **kwargs
        Passed to ``legend`` (font size: the book style's legend size).
    """
    handles = [Patch(color=LABEL_COLORS[c], label=n) for c, n in class_names(task).items()]
    if isinstance(where, Figure):
        kwargs = {"loc": "outside lower center", "ncols": len(handles), **kwargs}
    else:
        kwargs = {"loc": "lower right", "framealpha": 0.8, **kwargs}
    where.legend(handles=handles, **kwargs)


def panel_grid(n: int, aspect: float = 1.0, title_lines: int = 1, **kwargs):
    """A figure of ``n`` panels in rows of at most three, no wider than the book's text column.

    Two or four panels go in rows of two; unused cells of the last row are switched off.

    Parameters
    ----------
    n : int
        Number of panels (1 or more).
    aspect : float, optional
        Height of a panel over its width (images: rows over columns).
    title_lines : int, optional
        Lines of the panels' titles, for which each row gets room.
    **kwargs
        Passed to :func:`matplotlib.pyplot.subplots` (e.g. ``sharey``; layout: constrained).

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : ndarray of Axes, (n,)
        The panels, row by row.
    """
    if n < 1:
        raise ValueError(f"panel_grid needs at least one panel, got n={n}")
    cols = 2 if n in (2, 4) else min(n, MAX_COLUMNS)
    rows = -(-n // cols)
    panel = min(BOOK_WIDTH / cols, PANEL)
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols, rows * (panel * aspect + 0.25 * title_lines + 0.1)),
                             squeeze=False, **{"layout": "constrained", **kwargs})
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def readability_problems(fig) -> list[str]:
    """What keeps ``fig`` from being read at the book's width, one line each (empty: nothing).

    The figure is drawn first (layout, tick labels). Checked: its width against
    :data:`~emseg_tutorial.style.BOOK_WIDTH`; every panel with content at least a quarter of it
    wide (colour bars aside); every visible text at least :data:`~emseg_tutorial.style.MIN_FONT`
    points.

    Parameters
    ----------
    fig : matplotlib.figure.Figure

    Returns
    -------
    list of str
    """
    fig.canvas.draw()
    width = fig.get_figwidth()
    problems = [f"figure is {width:.1f} in wide, the book {BOOK_WIDTH:g} in"] if width > BOOK_WIDTH + 1e-6 else []
    for i, ax in enumerate(fig.axes):
        empty = not (ax.axison or ax.images or ax.lines or ax.patches or ax.texts or ax.collections)
        if not ax.get_visible() or empty or ax.get_label() == "<colorbar>":
            continue
        w = ax.get_position().width * width
        if w < BOOK_WIDTH / 4:
            problems.append(f"panel {i} ({ax.get_title()!r}) is {w:.1f} in wide")
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT - 1e-6:
            problems.append(f"text {t.get_text()!r} is {t.get_fontsize():g} pt")
    return problems


def gray(ax, image: np.ndarray, **kwargs) -> None:
    """Draw a 2D ``image`` in grey levels on ``ax``, without ticks.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    image : ndarray, (Y, X)
        Intensities; ``uint8`` images are drawn on the fixed 0-255 scale, others stretched to
        their own range.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow` (e.g. ``aspect``).
    """
    ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else None, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])


def overlay(ax, image: np.ndarray, labels: np.ndarray, task: str = "multiclass", alpha: float = 0.45,
            title: str | None = None) -> None:
    """Draw a 2D ``image`` with its ``labels`` on top (code 0 left clear).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    image : ndarray, (Y, X)
        Intensities, drawn with :func:`gray`.
    labels : ndarray of int, (Y, X)
        Class codes, coloured by :data:`LABEL_COLORS`.
    task : {"multiclass", "boundary"}, optional
        Which label codes.
    alpha : float, optional
        Opacity of the labels.
    title : str, optional
        Title of ``ax``.
    """
    gray(ax, image)
    ax.imshow(np.ma.masked_equal(labels, 0), cmap=label_cmap(task), vmin=0,
              vmax=max(class_names(task)), alpha=alpha, interpolation="nearest")
    if title:
        ax.set_title(title)


def moving_average(values, window: int) -> np.ndarray:
    """Moving average of noisy per-step values (losses, accuracies); the window shrinks at the start.

    Parameters
    ----------
    values : array_like, 1D
        Values in step order.
    window : int
        Steps averaged; ``1`` or less returns the values unchanged.

    Returns
    -------
    ndarray of float
        Same length as ``values``: entry ``i`` is the mean of the last ``min(i + 1, window)``.
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or window <= 1:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)
