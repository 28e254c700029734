"""Figures of chapter 6: each method's target predictions, scores per epoch, the domain shortcut.

Examples
--------
>>> import numpy as np
>>> fig = gap_dice_figure({"source": np.array([0.9, 0.5, 0.2])}, [1, 4, 8], chosen=8)
>>> len(fig.axes)
1
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .paper.comparison import Comparison, epoch_curves
from .labels import for_task
from .viz import _gray, overlay


def method_predictions(comp: Comparison, crop: int | None = 160, seed: int = 0):
    """Target test slice, its labels, and the boundary probability of the source model and of
    every method after its last epoch (run ``seed``), with that run's target boundary Jaccard."""
    image = comp.target_eval.image[comp.snapshot_slice]
    truth = for_task(comp.target_eval.labels[comp.snapshot_slice], "boundary")
    c = slice(0, crop) if crop else slice(None)
    panels = [("source only (M3)", comp.source_only_snapshot, comp.source_only["target"]["boundary_jaccard"])]
    for name in comp.names:
        runs = [r for r in comp.of(name) if r.seed in (seed, None)]
        if runs and runs[0].snapshots:
            r = runs[0]
            panels.append((name, r.snapshots[-1], r.scores(r.last)["boundary_jaccard"]))
    n = len(panels) + 2
    cols = min(n, 5)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.7 * rows), squeeze=False)
    axes = axes.ravel()
    _gray(axes[0], image[c, c])
    axes[0].set_title("target image", fontsize=9)
    overlay(axes[1], image[c, c], truth[c, c], "boundary", alpha=0.6)
    axes[1].set_title("labels (evaluation only)", fontsize=9)
    for ax, (name, snap, j) in zip(axes[2:], panels):
        ax.imshow(snap[c, c], cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"{name}\nJ = {j:.3f}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle("boundary probability after the last epoch (bright = wall)", fontsize=10)
    return fig


def method_curves(comp: Comparison, key: str = "boundary_jaccard", ax=None):
    """Target score per epoch for every trained method: mean over seeds, band = min to max."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    for name, curves in epoch_curves(comp, key).items():
        x = np.arange(curves.shape[1])
        line, = ax.plot(x, curves.mean(0), marker="o", label=name)
        if curves.shape[0] > 1:
            ax.fill_between(x, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.15)
    ax.axhline(comp.source_only["target"][key], color="k", ls="--", lw=1, label="source only (M3)")
    ax.set_xlabel("epoch (0 = before adaptation)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"target {key.replace('_', ' ')}")
    ax.legend(fontsize=8, ncol=2)
    return ax.figure


def shortcut_figure(comp: Comparison, names: tuple[str, ...] = ("conditional", "conditional-raw")):
    """How often the conditional discriminator calls each kind of fake pair fake, per epoch.

    Right answers on (target image, prediction) pairs *without* matching skill on (source image,
    wrong-slice truth) pairs mean it tells the domains apart instead of judging the label map.
    """
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        runs = comp.of(name)
        for key, label in (("d_acc_real", "real pairs"), ("d_acc_fake_mismatch", "wrong-slice pairs"),
                           ("d_acc_fake_target", "target pairs")):
            values = np.array([[e[key] for e in r.epochs[1:]] for r in runs])
            if values.size:
                ax.plot(np.arange(1, values.shape[1] + 1), values.mean(0), marker="o", label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("discriminator accuracy")
    axes[0, -1].legend(fontsize=8)
    return fig


def rank_normalisation_figure(patches: dict[str, np.ndarray], rank_normalize):
    """Patches of each domain as the U-Net sees them and as the conditional discriminator does
    (rank-normalised), with their grey-level histograms."""
    fig, axes = plt.subplots(2, 3, figsize=(9, 5.4))
    for row, (name, patch) in enumerate(patches.items()):
        raw = np.asarray(patch)[0, 0]
        ranked = rank_normalize(np.asarray(patch))[0, 0]
        _gray(axes[row, 0], raw)
        axes[row, 0].set_title(f"{name}: standardised", fontsize=9)
        _gray(axes[row, 1], ranked)
        axes[row, 1].set_title(f"{name}: rank-normalised", fontsize=9)
        for ax in axes[row, :2]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 2].hist(raw.ravel(), bins=50, alpha=0.6, density=True, label="standardised")
        axes[row, 2].hist(ranked.ravel(), bins=50, alpha=0.6, density=True, label="rank-normalised")
        axes[row, 2].set_title(f"{name}: grey-level histograms", fontsize=9)
    axes[0, 2].legend(fontsize=8)
    return fig


def gap_dice_figure(dice: dict[str, np.ndarray], gaps, chosen: int | None = None, ax=None):
    """Boundary Dice of slice pairs ``gap`` apart, per volume; the chosen minimum gap marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for name, values in dice.items():
        ax.plot(gaps, values, marker="o", label=name)
    if chosen is not None:
        ax.axvline(chosen, color="k", ls="--", lw=1, label=f"minimum gap {chosen}")
    ax.set_xlabel("slices apart")
    ax.set_ylabel("boundary Dice")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return ax.figure


__all__ = ["method_predictions", "method_curves", "shortcut_figure", "rank_normalisation_figure", "gap_dice_figure"]
