"""Figures of chapter 6 (``book/06_beyond.ipynb``): each method's target predictions, scores per
epoch, the conditional discriminator's domain shortcut, rank normalisation, the slice-gap choice;
and the field's VNC -> Lucchi++ benchmark beside its published rows (:func:`benchmark_figure`,
``benchmark vnc-lucchi``: its rows as plain data, :func:`~emseg_tutorial.paper.mito_benchmark.benchmark_json`).

Nothing here imports :mod:`emseg_tutorial.paper.comparison`: :func:`method_curves` takes the per-epoch
scores (:func:`~emseg_tutorial.paper.comparison.epoch_curves`), and :func:`method_predictions` and
:func:`shortcut_figure` take the comparison object duck-typed, reading only the attributes their
docstrings list.

Examples
--------
>>> import numpy as np
>>> fig = gap_dice_figure({"source": np.array([0.9, 0.5, 0.2])}, [1, 4, 8], chosen=8)
>>> len(fig.axes)
1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from ..adapt import get_method
from ..labels import for_task
from ..style import BOOK_WIDTH
from .common import gray, overlay, panel_grid

__all__ = ["method_predictions", "method_curves", "shortcut_figure", "rank_normalisation_figure", "gap_dice_figure",
           "benchmark_figure"]


def method_predictions(comp, crop: int | None = 160, seed: int = 0):
    """Target test slice, its labels, and the boundary probability of the source model and of
    every method after its last epoch (run ``seed``), with that run's target boundary Jaccard;
    rows of at most three panels.

    Parameters
    ----------
    comp : Comparison
        The result of :func:`emseg_tutorial.paper.comparison.compare`, or any object with the same
        attributes: ``target_eval`` (a volume with ``image`` and 4-class ``labels``),
        ``snapshot_slice``, ``source_only_snapshot``, ``source_only["target"]["boundary_jaccard"]``,
        ``names`` and ``of(name)``, whose runs have ``seed``, ``snapshots``, ``last`` and
        ``scores(epoch)``.
    crop : int or None, optional
        Side of the top-left crop drawn; ``None`` draws whole slices.
    seed : int, optional
        Which run of each method (deterministic runs, ``seed=None``, are always taken).

    Returns
    -------
    matplotlib.figure.Figure
    """
    image = comp.target_eval.image[comp.snapshot_slice]
    truth = for_task(comp.target_eval.labels[comp.snapshot_slice], "boundary")
    c = slice(0, crop) if crop else slice(None)
    panels = [("source only (M3)", comp.source_only_snapshot, comp.source_only["target"]["boundary_jaccard"])]
    for name in comp.names:
        runs = [r for r in comp.of(name) if r.seed in (seed, None)]
        if runs and runs[0].snapshots:
            r = runs[0]
            panels.append((name, r.snapshots[-1], r.scores(r.last)["boundary_jaccard"]))
    image, truth = image[c, c], truth[c, c]
    fig, axes = panel_grid(len(panels) + 2, aspect=image.shape[0] / image.shape[1], title_lines=2)
    gray(axes[0], image)
    axes[0].set_title("target image")
    overlay(axes[1], image, truth, "boundary", alpha=0.6, title="labels (evaluation only)")
    for ax, (name, snap, j) in zip(axes[2:], panels):
        ax.imshow(snap[c, c], cmap="magma", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[], title=f"{name}\nJ = {j:.3f}")
    fig.suptitle("boundary probability after the last epoch (bright = wall)")
    return fig


def method_curves(curves: dict[str, np.ndarray], reference: float | None = None,
                  key: str = "boundary_jaccard", ax=None, reference_label: str = "source only (M3)"):
    """Target score per epoch for every trained method: mean over seeds, band = min to max.

    Parameters
    ----------
    curves : dict of str to ndarray, each (seeds, epochs + 1)
        Method -> score of each run after each epoch (column 0: before adaptation), as
        :func:`emseg_tutorial.paper.comparison.epoch_curves` returns them.
    reference : float, optional
        Score drawn as a dashed line, e.g. the source-only model's
        (``comp.source_only["target"][key]``).
    key : str, optional
        Name of the score, for the axis label (the key ``curves`` were made with).
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    reference_label : str, optional
        Legend entry of ``reference``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = method_curves({"adversarial": np.array([[0.5, 0.6], [0.5, 0.7]])}, reference=0.5)
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['adversarial', 'source only (M3)']
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for name, scores in curves.items():
        scores = np.asarray(scores, dtype=float)
        x = np.arange(scores.shape[1])
        line, = ax.plot(x, scores.mean(0), marker="o", label=name)
        if scores.shape[0] > 1:
            ax.fill_between(x, scores.min(0), scores.max(0), color=line.get_color(), alpha=0.15)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
    ax.set_xlabel("epoch (0 = before adaptation)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"target {key.replace('_', ' ')}")
    ax.legend(ncol=2)
    return ax.figure


def shortcut_figure(comp, names: Sequence[str] | None = None):
    """How often the conditional discriminator calls each kind of fake pair fake, per epoch.

    Right answers on (target image, prediction) pairs *without* matching skill on (source image,
    wrong-slice truth) pairs mean it tells the domains apart instead of judging the label map.

    Parameters
    ----------
    comp : Comparison
        The result of :func:`emseg_tutorial.paper.comparison.compare`, or any object whose
        ``of(name)`` lists runs with ``epochs``: per-epoch dicts (epoch 0 first) holding
        ``d_acc_real``, ``d_acc_fake_mismatch`` and ``d_acc_fake_target`` (and, when recorded,
        ``d_acc_target_hard``: target pairs with argmax-hardened maps, the hard-vs-soft probe).
    names : sequence of str, optional
        Methods with a conditional discriminator, one panel each (those without runs are left
        out); default: every method of ``comp.names`` whose registered discriminator judges
        (image, label map) pairs (:mod:`emseg_tutorial.adapt.registry`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if names is None:
        names = [n for n in comp.names if get_method(n).discriminator == "pairs"]
    if not names:
        raise ValueError("shortcut_figure: no method with a conditional discriminator (pairs) in this comparison")
    names = [n for n in names if comp.of(n)] or list(names[:1])
    fig, axes = panel_grid(len(names), aspect=0.8, sharey=True)
    for ax, name in zip(axes, names):
        runs = comp.of(name)
        for key, label in (("d_acc_real", "real pairs"), ("d_acc_fake_mismatch", "wrong-slice pairs"),
                           ("d_acc_fake_target", "target pairs"), ("d_acc_target_hard", "target pairs, hardened")):
            if not all(e.get(key) is not None for r in runs for e in r.epochs[1:]):
                continue
            values = np.array([[e[key] for e in r.epochs[1:]] for r in runs])
            if values.size:
                ax.plot(np.arange(1, values.shape[1] + 1), values.mean(0), marker="o", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("discriminator accuracy")
    axes[-1].legend()
    return fig


def rank_normalisation_figure(patches: dict[str, np.ndarray], rank_normalize: Callable):
    """Patches of each domain as the U-Net sees them and as the conditional discriminator does
    (rank-normalised), with their grey-level histograms.

    Parameters
    ----------
    patches : dict of str to ndarray, each (1, 1, Y, X)
        Domain -> one standardised patch (two domains: one row each).
    rank_normalize : callable
        The rank normalisation, e.g. :func:`emseg_tutorial.data.histmatch.rank_normalize`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(2, 3, figsize=(BOOK_WIDTH, 6.0), layout="constrained")
    for row, (name, patch) in enumerate(patches.items()):
        raw = np.asarray(patch)[0, 0]
        ranked = np.asarray(rank_normalize(np.asarray(patch)))[0, 0]
        gray(axes[row, 0], raw)
        axes[row, 0].set_title(f"{name}:\nstandardised")
        gray(axes[row, 1], ranked)
        axes[row, 1].set_title(f"{name}:\nrank-normalised")
        for ax in axes[row, :2]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 2].hist(raw.ravel(), bins=50, alpha=0.6, density=True, label="standardised")
        axes[row, 2].hist(ranked.ravel(), bins=50, alpha=0.6, density=True, label="rank-normalised")
        axes[row, 2].set_title(f"{name}:\ngrey levels")
    fig.legend(*axes[0, 2].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return fig


def gap_dice_figure(dice: dict[str, np.ndarray], gaps, chosen: int | None = None, ax=None):
    """Boundary Dice of slice pairs ``gap`` apart, per volume; the chosen minimum gap marked.

    Parameters
    ----------
    dice : dict of str to ndarray
        Volume -> boundary Dice at each gap, e.g.
        :func:`emseg_tutorial.data.stats.boundary_dice_by_gap`.
    gaps : sequence of int
        The gaps, in slices.
    chosen : int, optional
        The minimum gap used, drawn as a dashed line.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    for name, values in dice.items():
        ax.plot(gaps, values, marker="o", label=name)
    if chosen is not None:
        ax.axvline(chosen, color="k", ls="--", lw=1, label=f"minimum gap {chosen}")
    ax.set_xlabel("slices apart")
    ax.set_ylabel("boundary Dice")
    ax.set_ylim(0, 1)
    ax.legend()
    return ax.figure


def benchmark_figure(rows: Sequence[dict], published: Sequence[dict], key: str = "foreground_iou",
                     title: str = "VNC -> Lucchi++ mitochondria"):
    """Bars of ``key`` for our rows (error bars: the sample sd over seeds; blue the label-free
    choice, orange the last epoch, grey source-only and the oracle), the published rows as dashed
    lines across the plot, named in the legend.

    Parameters
    ----------
    rows : sequence of dict
        Our rows: ``row`` (a label), ``key`` (the mean) and, where several runs were made,
        ``values[key]`` (one score per run).
    published : sequence of dict
        ``method`` and ``scores`` (a dict holding ``key`` where the row reports it).
    key : str
        The score drawn (default foreground IoU).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rows = [{"row": "source-only", "foreground_iou": 0.4}, {"row": "oracle", "foreground_iou": 0.8},
    ...         {"row": "adabn, label-free", "foreground_iou": 0.5, "values": {"foreground_iou": [0.5]}}]
    >>> fig = benchmark_figure(rows, [{"method": "DA-ISC, subset 1", "scores": {"foreground_iou": 0.6865}}])
    >>> len(fig.axes), fig.axes[0].get_legend().get_texts()[0].get_text()
    (1, 'DA-ISC, subset 1 (published) 0.6865')
    """
    drawn = [r for r in rows if r.get(key) is not None]
    fig, ax = plt.subplots(figsize=(BOOK_WIDTH, 0.3 * len(drawn) + 1.6), layout="constrained")
    y = np.arange(len(drawn))[::-1]
    means = [r[key] for r in drawn]
    spread = [np.std(r["values"][key], ddof=1) if len(r.get("values", {}).get(key, [])) > 1 else 0 for r in drawn]
    colours = ["0.6" if "source-only" in r["row"] else "0.3" if r["row"].startswith("oracle") else
               "C0" if r["row"].endswith("label-free") else "C1" for r in drawn]
    ax.barh(y, means, xerr=spread, color=colours, capsize=2)
    ax.set_yticks(y, [r["row"] for r in drawn], fontsize=8)
    for i, pub in enumerate(p for p in published if key in p["scores"]):
        value = pub["scores"][key]
        ax.axvline(value, color=f"C{i + 2}", ls="--", lw=1.2, label=f"{pub['method']} (published) {value:g}")
    if published:
        ax.legend(loc="lower right", fontsize=7, framealpha=0.9)
    ax.set_xlim(0, 1)
    ax.set_xlabel({"foreground_iou": "foreground IoU on the held-out target"}.get(key, key))
    ax.set_title(title, fontsize=9)
    return fig
