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
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from ..labels import class_names

__all__ = ["LABEL_COLORS", "label_cmap", "label_legend", "gray", "overlay", "moving_average"]

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


def label_legend(ax, task: str = "multiclass", **kwargs) -> None:
    """Add a legend of the label colours to ``ax``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where the legend goes.
    task : {"multiclass", "boundary"}, optional
        Which label codes.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.legend` (default: lower right, small font).
    """
    handles = [Patch(color=LABEL_COLORS[c], label=n) for c, n in class_names(task).items()]
    ax.legend(handles=handles, **{"loc": "lower right", "fontsize": 8, "framealpha": 0.8, **kwargs})


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
