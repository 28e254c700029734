"""Figures of chapter 1 (``book/01_data.ipynb``): the pipeline, the two domains, their slices, classes, intensities and drift.

Examples
--------
>>> import matplotlib; matplotlib.use("Agg")
>>> from emseg_tutorial.data.synthetic import make_volume
>>> fig = show_domains({"FIBSEM twin": make_volume("fibsem", (4, 64, 64))})
>>> len(fig.axes)
3
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..adapt.registry import get_method
from ..data.stats import slice_means, slice_stds
from ..data.volume import Volume
from ..labels import class_fractions, class_names
from ..paper.stages import PAPER_ITERATIONS, STAGES  # drawn by pipeline_figure
from ..style import BOOK_WIDTH
from .common import LABEL_COLORS, gray, label_legend, overlay, panel_grid

_WEIGHT_NAMES = {"entropy": "5x5 label entropy", "distance": "smoothed distance (σ = 10)"}
_LOSS_NAMES = {"ce": "weighted CE", "dice": "soft Dice", "ce+dice": "weighted CE + Dice", "focal": "weighted focal"}

__all__ = ["reslice", "show_domains", "neighbour_slices", "class_fraction_bars", "intensity_histograms",
           "slice_drift", "pipeline_figure"]


def reslice(ax, volume: Volume, y: int | None = None, title: str | None = None) -> None:
    """Draw the XZ plane at row ``y`` with z stretched to the physical voxel size.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    volume : Volume
        The stack; its ``anisotropy`` sets the aspect ratio.
    y : int, optional
        Row of the plane (default: the middle row).
    title : str, optional
        Title of ``ax``.
    """
    y = volume.shape[1] // 2 if y is None else y
    aspect = volume.anisotropy or 1.0
    gray(ax, volume.image[:, y, :], aspect=aspect)
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    if title:
        ax.set_title(title)


def show_domains(volumes: dict[str, Volume], z: int | None = None, task: str = "multiclass"):
    """One row per volume: an XY slice, the same slice with labels, an XZ reslice; the label
    colours once, below the rows.

    Parameters
    ----------
    volumes : dict of str to Volume
        Title -> volume.
    z : int, optional
        Slice index (default: the middle slice of each volume).
    task : {"multiclass", "boundary"}, optional
        Label codes of the volumes' labels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(len(volumes), 3, figsize=(BOOK_WIDTH, 3.2 * len(volumes) + 0.4), squeeze=False,
                             layout="constrained")
    for row, (name, v) in zip(axes, volumes.items()):
        k = v.shape[0] // 2 if z is None else min(z, v.shape[0] - 1)
        gray(row[0], v.image[k])
        row[0].set_title(f"{name}\nXY slice {k}")
        if v.labels is not None:
            overlay(row[1], v.image[k], v.labels[k], task, title="labels")
        else:
            row[1].axis("off")
        reslice(row[2], v, title=f"XZ reslice\n({v.voxel_size[0]:g} nm z step)" if v.voxel_size else "XZ reslice")
    if any(v.labels is not None for v in volumes.values()):
        label_legend(fig, task)
    return fig


def neighbour_slices(volume: Volume, z: int | None = None, count: int = 3, crop: int = 96):
    """Consecutive slices of one crop side by side, membranes outlined from the labels.

    Shows how much walls move between neighbouring slices (little when isotropic).

    Parameters
    ----------
    volume : Volume
        The stack; without labels the slices are drawn bare.
    z : int, optional
        First slice (default: the middle one; moved down so that ``count`` slices fit).
    count : int, optional
        Number of consecutive slices.
    crop : int, optional
        Side of the top-left crop, in pixels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    z = volume.shape[0] // 2 if z is None else z
    z = min(max(z, 0), volume.shape[0] - count)
    c = min(crop, volume.shape[1], volume.shape[2])
    fig, axes = panel_grid(count)
    for i, ax in enumerate(axes):
        gray(ax, volume.image[z + i, :c, :c])
        if volume.labels is not None:
            ax.contour(volume.labels[z + i, :c, :c] == 1, levels=[0.5], colors=[LABEL_COLORS[1]], linewidths=0.6)
        ax.set_title(f"{volume.name}: z={z + i}")
    return fig


def class_fraction_bars(volumes: dict[str, Volume], task: str = "multiclass", ax=None):
    """Grouped bars of the fraction of labelled pixels in each class, one group per class.

    Parameters
    ----------
    volumes : dict of str to Volume
        Legend label -> volume.
    task : {"multiclass", "boundary"}, optional
        Label codes of the volumes' labels.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = list(class_names(task).values())
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.2))
    width = 0.8 / max(len(volumes), 1)
    for i, (title, v) in enumerate(volumes.items()):
        fr = class_fractions(v.labels, task)
        bars = ax.bar(np.arange(len(names)) + i * width, [100 * fr[n] for n in names], width, label=title)
        ax.bar_label(bars, fmt="%.1f", fontsize="small")
    ax.set_xticks(np.arange(len(names)) + width * (len(volumes) - 1) / 2, names)
    ax.set_ylabel("% of labelled pixels")
    ax.legend()
    return fig


def intensity_histograms(volumes: dict[str, Volume], ax=None, by_class: bool = True):
    """Intensity histograms of each volume; with ``by_class``, boundary vs the rest separately.

    Overlap between the boundary and non-boundary curves of one domain shows how hard the
    pixels are to tell apart; the shift between domains is the intensity part of the gap.

    Parameters
    ----------
    volumes : dict of str to Volume
        Legend label -> volume.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    by_class : bool, optional
        Separate curves for boundary (dashed) and other labelled pixels of labelled volumes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.2))
    bins = np.arange(257)
    for i, (title, v) in enumerate(volumes.items()):
        color = f"C{i}"
        if by_class and v.labels is not None:
            for mask, style, part in ((v.labels == 1, "--", "boundary"), (v.labels > 1, "-", "rest")):
                h, _ = np.histogram(v.image[mask], bins=bins, density=True)
                ax.plot(bins[:-1], h, style, color=color, label=f"{title}: {part}", lw=1.2)
        else:
            h, _ = np.histogram(v.image, bins=bins, density=True)
            ax.plot(bins[:-1], h, color=color, label=title, lw=1.2)
    ax.set_xlabel("intensity (uint8)")
    ax.set_ylabel("density")
    ax.legend()
    return fig


def slice_drift(volumes: dict[str, Volume], ax=None):
    """Per-slice mean intensity (band: ± one standard deviation) against depth in nm.

    Parameters
    ----------
    volumes : dict of str to Volume
        Legend label -> volume.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.2))
    for i, (title, v) in enumerate(volumes.items()):
        step = v.voxel_size[0] if v.voxel_size else 1.0
        z = np.arange(v.shape[0]) * step
        m, s = slice_means(v.image), slice_stds(v.image)
        ax.plot(z, m, "-o", ms=2.5, color=f"C{i}", label=title)
        ax.fill_between(z, m - s, m + s, color=f"C{i}", alpha=0.15)
    ax.set_xlabel("depth (nm)")
    ax.set_ylabel("slice mean intensity")
    ax.legend()
    return fig


def pipeline_figure():
    """The paper's pipeline, M1 -> M2 -> M3 -> adaptation, with each step's data, weights and loss.

    Drawn from the library's own tables (:data:`emseg_tutorial.paper.stages.STAGES`,
    :data:`~emseg_tutorial.paper.stages.PAPER_ITERATIONS` and the ``paper`` method's
    defaults in its record, :func:`emseg_tutorial.adapt.registry.get_method`), so it changes when they do.

    Returns
    -------
    matplotlib.figure.Figure
    """
    def trained(name: str, title: str) -> tuple[str, list[str]]:
        s = STAGES[name]
        task = "4 classes" if s.task == "multiclass" else "boundary vs rest"
        start = f"from {s.init.upper()}" if s.init else "from scratch"
        extra = ", + intensity jitter" if s.jitter else ""
        return title, [f"source, {task}, {start}{extra}",
                       f"weights: {_WEIGHT_NAMES.get(s.weights, s.weights)};  loss: {_LOSS_NAMES.get(s.loss, s.loss)}",
                       f"{PAPER_ITERATIONS[s.budget]} paper iterations"]

    paper = get_method("paper").defaults
    supervised = "no source loss" if paper["source_weight"] == 0 else "source loss kept"
    steps = [trained("m1", "M1\n(Exp. 1)"), trained("m2", "M2\n(Exp. 2)"), trained("m3", "M3\n(jitter)"),
             ("adaptation\n(Exp. 3)", ["unlabelled target images, from M3",
                                         "D: source truth real, target prediction fake",
                                         f"loss: fool D ({supervised})"])]
    box, gap = 1.05, 0.45  # height of a step's box, and of the arrow between two, in inches
    height = len(steps) * box + (len(steps) - 1) * gap
    fig, ax = plt.subplots(figsize=(BOOK_WIDTH, height + 0.5), layout="constrained")
    ax.set_xlim(0, BOOK_WIDTH)
    ax.set_ylim(-0.05, height + 0.05)
    ax.axis("off")
    colours = ["#fde0c5", "#fde0c5", "#fde0c5", "#e5d8f0"]
    for i, ((title, lines), colour) in enumerate(zip(steps, colours)):
        top = height - i * (box + gap)
        ax.add_patch(FancyBboxPatch((0.1, top - box + 0.05), BOOK_WIDTH - 0.2, box - 0.1, boxstyle="round,pad=0.04",
                                    fc=colour, ec="k", lw=0.8))
        ax.text(0.3, top - box / 2, title, ha="left", va="center", fontweight="bold", linespacing=1.3)
        ax.text(1.75, top - box / 2, "\n".join(lines), ha="left", va="center", linespacing=1.4)
        if i:
            ax.add_patch(FancyArrowPatch((1.0, top + gap - 0.02), (1.0, top + 0.02), arrowstyle="-|>",
                                         mutation_scale=14, color="k", lw=1.2))
    ax.set_title("The paper's pipeline: each model starts from the one before")
    return fig
