"""Figures of chapters 3 and 4 (``book/03_experiment1.ipynb``, ``book/04_experiment2.ipynb``):
training curves, score bars, predictions and their boundary errors, the intensity jitter.

Examples
--------
>>> import matplotlib; matplotlib.use("Agg")
>>> truth = np.full((16, 16), 2, np.uint8); truth[:, 7] = 1
>>> fig = prediction_panels(np.zeros((16, 16), np.uint8), truth, {"perfect": truth}, task="boundary")
>>> [ax.get_title() for ax in fig.axes[:3]]
['image', 'ground truth', 'perfect']
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from ..data.normalize import to_unit_range
from ..paper.seeds import seed_table
from ..style import BOOK_WIDTH
from .common import gray, label_legend, moving_average, overlay, panel_grid

__all__ = ["training_curves", "boundary_errors", "prediction_panels", "boundary_error_panels", "score_bars",
           "seed_score_bars", "jitter_examples"]

#: Colours of :func:`boundary_errors` (on black: the pixels that are boundary in neither).
_ERROR_COLOURS = {"hit": (1.0, 1.0, 1.0), "miss": (0.2, 0.45, 1.0), "false alarm": (1.0, 0.25, 0.2),
                  "unlabelled": (0.3, 0.3, 0.3)}


def training_curves(histories: dict[str, dict], score: str = "mean_jaccard", smooth: int = 20):
    """Training loss (moving average) and a validation score against the step, one line per run.

    Parameters
    ----------
    histories : dict of str to dict
        Run name -> ``TrainResult.history``.
    score : str
        Validation key to plot (``mean_jaccard``, ``boundary_jaccard``, ``boundary_f1``).
    smooth : int
        Window of the loss moving average, in steps.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(BOOK_WIDTH, 3.6), layout="constrained")
    for i, (name, h) in enumerate(histories.items()):
        ax_loss.plot(h["train"]["step"], moving_average(h["train"]["loss"], smooth), color=f"C{i}", label=name, lw=1.2)
        steps = [v["step"] for v in h.get("val", [])]
        vals = [np.nan if v[score] is None else v[score] for v in h.get("val", [])]
        ax_val.plot(steps, vals, "-o", ms=3, color=f"C{i}", label=name)
    ax_loss.set(xlabel="step", ylabel=f"training loss ({smooth}-step mean)", yscale="log")
    ax_val.set(xlabel="step", ylabel=f"validation {score.replace('_', ' ')}", ylim=(0, 1))
    ax_val.legend()
    return fig


def boundary_errors(ax, truth: np.ndarray, prediction: np.ndarray, title: str | None = None) -> None:
    """Boundary agreement of one slice: hits white, misses (false negatives) blue, false alarms red.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    truth, prediction : ndarray of int, (Y, X)
        Class codes (``1`` boundary); unlabelled pixels of ``truth`` (code 0) are grey.
    title : str, optional
        Title of ``ax``.
    """
    t, p = truth == 1, prediction == 1
    rgb = np.zeros(t.shape + (3,), np.float32)
    rgb[t & p] = _ERROR_COLOURS["hit"]
    rgb[t & ~p] = _ERROR_COLOURS["miss"]
    rgb[~t & p] = _ERROR_COLOURS["false alarm"]
    rgb[truth == 0] = _ERROR_COLOURS["unlabelled"]
    ax.imshow(rgb)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def prediction_panels(image: np.ndarray, truth: np.ndarray, predictions: dict[str, np.ndarray],
                      task: str = "multiclass", crop: int | None = 128):
    """Image, ground truth and each model's prediction of one slice (optionally a top-left crop),
    in rows of at most three panels; the label colours once, below them.

    Where each prediction's walls are right or wrong is the next figure,
    :func:`boundary_error_panels`.

    Parameters
    ----------
    image : ndarray, (Y, X)
        Intensities of the slice.
    truth : ndarray of int, (Y, X)
        Its class codes.
    predictions : dict of str to ndarray, each (Y, X)
        Model name -> predicted class codes of the slice.
    task : {"multiclass", "boundary"}, optional
        Label codes of ``truth`` and the predictions.
    crop : int or None, optional
        Side of the top-left crop drawn; ``None`` draws the whole slice.

    Returns
    -------
    matplotlib.figure.Figure
    """
    c = slice(0, crop) if crop else slice(None)
    image, truth = image[c, c], truth[c, c]
    fig, axes = panel_grid(len(predictions) + 2, aspect=image.shape[0] / image.shape[1])
    gray(axes[0], image)
    axes[0].set_title("image")
    overlay(axes[1], image, truth, task, alpha=0.55, title="ground truth")
    for ax, (name, pred) in zip(axes[2:], predictions.items()):
        overlay(ax, image, pred[c, c], task, alpha=0.55, title=name)
    label_legend(fig, task)
    return fig


def boundary_error_panels(truth: np.ndarray, predictions: dict[str, np.ndarray], crop: int | None = 128):
    """Boundary hits (white), misses (blue) and false alarms (red) of each model on one slice,
    after the truth's own boundary, in rows of at most three panels.

    Parameters
    ----------
    truth : ndarray of int, (Y, X)
        Class codes of the slice (``1`` boundary, ``0`` unlabelled: grey).
    predictions : dict of str to ndarray, each (Y, X)
        Model name -> predicted class codes of the slice.
    crop : int or None, optional
        Side of the top-left crop drawn; ``None`` draws the whole slice.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> truth = np.full((16, 16), 2, np.uint8); truth[:, 7] = 1
    >>> fig = boundary_error_panels(truth, {"none": np.full_like(truth, 2)})
    >>> [ax.get_title() for ax in fig.axes]
    ['boundary (truth)', 'none']
    """
    c = slice(0, crop) if crop else slice(None)
    truth = truth[c, c]
    fig, axes = panel_grid(len(predictions) + 1, aspect=truth.shape[0] / truth.shape[1])
    boundary_errors(axes[0], truth, truth, "boundary (truth)")
    for ax, (name, pred) in zip(axes[1:], predictions.items()):
        boundary_errors(ax, truth, pred[c, c], name)
    fig.legend(handles=[Patch(color=rgb, label=label) for label, rgb in _ERROR_COLOURS.items()],
               loc="outside lower center", ncols=len(_ERROR_COLOURS))
    return fig


def _reference_text(ax, x: float, y: float, label: str) -> None:
    """``label`` and the value ``x`` next to a reference line at ``x``, on the side with more room
    (a label right of 0.8 would run past the axes into a neighbouring panel)."""
    right = x <= 0.5
    ax.text(x, y, f" {label} {x:g}" if right else f"{label} {x:g} ", fontsize="small", va="bottom",
            ha="left" if right else "right")


def score_bars(table, column: str, ax=None, reference: float | None = None, reference_label: str = "paper"):
    """Horizontal bars of one score column of a results table (rows: models).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per model (the index); scores in [0, 1].
    column : str
        The score to draw.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    reference : float, optional
        A published value, drawn as a dashed line.
    reference_label : str, optional
        Text next to ``reference``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 0.45 * len(table) + 1))
    values = table[column].astype(float)
    bars = ax.barh(list(table.index)[::-1], values.values[::-1], color="C0")
    ax.bar_label(bars, fmt="%.3f", fontsize="small")
    if reference is not None:
        ax.axvline(reference, color="k", ls="--", lw=1)
        _reference_text(ax, reference, len(table) - 0.4, reference_label)
    ax.set_xlim(0, 1)
    ax.set_xlabel(column.replace("_", " "))
    return fig


def seed_score_bars(long, column: str = "boundary_jaccard", ax=None, reference: float | None = None,
                    reference_label: str = "paper"):
    """Mean over seeds (bar), ± one standard deviation (error bar) and every seed (dots), per run.

    Parameters
    ----------
    long : pandas.DataFrame
        One row per (run, seed): columns ``stage``, ``seed``, ``column`` and optionally
        ``weights`` (used as the label), as from :func:`emseg_tutorial.paper.seed_scores`.
    column : str
        The score to draw, in [0, 1].
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    reference : float, optional
        A published value, drawn as a dashed line.
    reference_label : str, optional
        Text next to ``reference``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg"); import pandas as pd
    >>> long = pd.DataFrame({"stage": ["a", "a", "b"], "seed": [0, 1, 0], "boundary_jaccard": [.5, .7, .4]})
    >>> fig = seed_score_bars(long)
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['a (n=2)', 'b (n=1)']
    """
    table = seed_table(long, [column])  # the numbers the chapter's table prints
    order = list(table.index)
    mean, sd, labels = table[f"{column} mean"], table[f"{column} sd"].fillna(0.0), table["weights"]
    n = long.groupby("stage", sort=False)[column].count()  # the seeds this score is defined for
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 0.45 * len(order) + 1))
    y = np.arange(len(order))[::-1]
    ax.barh(y, mean.to_numpy(), xerr=sd.to_numpy(), color="C0", alpha=0.6, capsize=3)
    for yi, name in zip(y, order):
        values = long.loc[long["stage"] == name, column].to_numpy(dtype=float)
        ax.plot(values, np.full(values.shape, yi), "o", color="k", ms=3)
        ax.text(1.0, yi, f" {mean[name]:.3f} ± {sd[name]:.3f}", va="center", fontsize="small",
                transform=ax.get_yaxis_transform())
    ax.set_yticks(y, [f"{labels[name]} (n={n[name]})" for name in order])
    if reference is not None:
        ax.axvline(reference, color="k", ls="--", lw=1)
        _reference_text(ax, reference, len(order) - 0.6, reference_label)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{column.replace('_', ' ')}: mean ± sd over seeds, dots: single seeds")
    return fig


def jitter_examples(patch: np.ndarray, jitter: Callable, n: int = 5, seed: int = 0):
    """One image patch and ``n`` random jitters of it (the M2 -> M3 augmentation).

    Parameters
    ----------
    patch : ndarray, (Y, X)
        Image patch (any range; rescaled to [0, 1] first).
    jitter : callable
        ``jitter(batch, generator)`` on a ``(n, Y, X)`` tensor in [0, 1] with a
        ``torch.Generator``, e.g. :class:`~emseg_tutorial.data.augment.Jitter`.
    n : int, optional
        Number of jittered copies.
    seed : int, optional
        Seed of the random generator passed to ``jitter``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import torch

    unit = to_unit_range(patch)
    out = jitter(torch.from_numpy(np.repeat(unit[None], n, axis=0)), torch.Generator().manual_seed(seed)).numpy()
    fig, axes = panel_grid(n + 1, aspect=unit.shape[0] / unit.shape[1])
    for ax, img, title in zip(axes, [unit, *out], ["original"] + [f"jitter {i + 1}" for i in range(n)]):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
