"""Figures of chapter 5 (``book/05_experiment3.ipynb``): the adversarial step, the target
prediction after each epoch, and the label-free diagnostics of an adaptation run.

Examples
--------
>>> import matplotlib; matplotlib.use("Agg")
>>> fig = adversarial_diagram()
>>> len(fig.axes)
1
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..style import BOOK_WIDTH
from .common import gray, moving_average, overlay, panel_grid

__all__ = ["adversarial_diagram", "adaptation_snapshots", "gap_figure", "adaptation_diagnostics"]


def adversarial_diagram(conditional: bool = False):
    """A diagram of the paper's adversarial step (or, with ``conditional``, its future-work variant).

    Parameters
    ----------
    conditional : bool, optional
        Draw the conditional discriminator (image + label map pairs, mismatched-slice fakes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(BOOK_WIDTH, 3.6), layout="constrained")
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4.6)
    ax.axis("off")

    def box(x, y, text, color):
        ax.add_patch(FancyBboxPatch((x - 0.85, y - 0.35), 1.7, 0.7, boxstyle="round,pad=0.05",
                                    fc=color, ec="k", lw=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=10)

    def arrow(a, b, text="", color="k", rad=0.0, dy=0.22):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color=color,
                                     connectionstyle=f"arc3,rad={rad}", lw=1.2))
        if text:  # beside the arrow's middle, to its right, above (dy > 0) or below it
            ax.text((a[0] + b[0]) / 2 + 0.1, (a[1] + b[1]) / 2 + dy, text, ha="left", va="center",
                    fontsize=10, color=color)

    src = "source image +\nits label map" if conditional else "source label map\n(one-hot)"
    tgt = "target image +\nprediction" if conditional else "prediction\n(softmax)"
    box(1.2, 3.1, "target slice", "#dbe9f6")
    box(3.6, 3.1, "U-Net (M3)", "#fde0c5")
    box(6.0, 3.1, tgt, "#fde0c5")
    box(6.0, 0.9, src, "#d9f0d3")
    box(8.5, 2.0, "discriminator", "#e5d8f0")
    arrow((2.05, 3.1), (2.75, 3.1))
    arrow((4.45, 3.1), (5.15, 3.1))
    arrow((6.85, 3.0), (7.65, 2.25), "fake (L3)", "#b2182b")
    arrow((6.85, 1.0), (7.65, 1.75), "real (L2)", "#1b7837", dy=-0.3)
    if conditional:
        box(3.6, 0.9, "source image +\nGT of a far slice", "#f6e8c3")
        ax.annotate("", xy=(7.7, 1.5), xytext=(4.45, 0.7),
                    arrowprops=dict(arrowstyle="-|>", color="#b2182b", connectionstyle="arc3,rad=0.25"))
        ax.text(5.6, 0.15, "fake (mismatched pair)", fontsize=10, color="#b2182b", ha="center")
    arrow((8.5, 2.4), (3.6, 3.5), color="#2166ac", rad=0.35)
    ax.text(5.0, 4.35, "U-Net update: make D call target predictions real (no supervised loss)",
            ha="center", fontsize=10, color="#2166ac")
    return fig


def adaptation_snapshots(image: np.ndarray, truth: np.ndarray, snapshots: list[np.ndarray], crop: int | None = 160):
    """The paper's Fig. 6: a target slice, its labels, and the boundary probability after each
    epoch, in rows of at most three panels.

    Parameters
    ----------
    image : ndarray, (Y, X)
        The target slice.
    truth : ndarray of int, (Y, X)
        Its boundary-task codes (shown for evaluation only).
    snapshots : list of ndarray, each (Y, X)
        Boundary probability before adaptation, then after each epoch.
    crop : int or None, optional
        Side of the top-left crop drawn; ``None`` draws whole slices.

    Returns
    -------
    matplotlib.figure.Figure
    """
    c = slice(0, crop) if crop else slice(None)
    image, truth = image[c, c], truth[c, c]
    fig, axes = panel_grid(len(snapshots) + 2, aspect=image.shape[0] / image.shape[1], title_lines=2)
    gray(axes[0], image)
    axes[0].set_title("target image")
    overlay(axes[1], image, truth, "boundary", alpha=0.6, title="labels\n(evaluation only)")
    for i, (ax, snap) in enumerate(zip(axes[2:], snapshots)):
        ax.imshow(snap[c, c], cmap="magma", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("before (M3)" if i == 0 else f"after epoch {i}")
    return fig


def gap_figure(preview, crop: int | None = 160):
    """Chapter 1's picture of the domain gap: a held-out target slice, its labels, and the
    boundary probability of source-only (M3), the adapted U-Net and the oracle model, each
    titled with its boundary Jaccard on the whole held-out volume.

    ``preview`` is an :class:`emseg_tutorial.paper.gap.GapPreview`.
    """
    c = slice(0, crop) if crop else slice(None)
    image, truth = preview.image[c, c], preview.labels[c, c]
    fig, axes = panel_grid(len(preview.probabilities) + 2, aspect=image.shape[0] / image.shape[1], title_lines=2)
    gray(axes[0], image)
    axes[0].set_title("target image")
    overlay(axes[1], image, truth, "boundary", alpha=0.6, title="labels\n(evaluation only)")
    for ax, (name, prob) in zip(axes[2:], preview.probabilities.items()):
        ax.imshow(prob[c, c], cmap="magma", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name.split(' (')[0]}\nJ = {preview.scores[name]:.3f}")
    return fig


def adaptation_diagnostics(history: dict, smooth: int = 10):
    """Label-free signals of an adversarial run, and (dashed, evaluation only) target scores.

    Four panels in a 2 x 2 grid: discriminator accuracy on real and fake maps per step; predicted boundary fraction
    on the target against the unadapted network's on the source (and the source labels'); mean prediction entropy
    on the target; boundary
    Jaccard on source validation slices and, when available, on the held-out target labels.

    Parameters
    ----------
    history : dict
        ``history`` of an adversarial run: ``"train"`` (per-step ``step``, ``acc_real``,
        ``acc_fake``) and ``"epochs"`` (per-epoch reports).
    smooth : int, optional
        Window of the moving average of the per-step accuracies.

    Returns
    -------
    matplotlib.figure.Figure
    """
    epochs = history["epochs"]
    e = [r["epoch"] for r in epochs]
    fig, axes = plt.subplots(2, 2, figsize=(BOOK_WIDTH, 6.6), layout="constrained")
    axes = axes.ravel()
    t = history["train"]
    axes[0].plot(t["step"], moving_average(t["acc_real"], smooth), label="real (source)")
    axes[0].plot(t["step"], moving_average(t["acc_fake"], smooth), label="fake (target)")
    axes[0].axhline(0.5, color="gray", lw=0.8, ls=":")
    axes[0].set(xlabel="step", ylabel="discriminator accuracy", ylim=(0, 1.02))
    axes[0].legend()
    axes[1].plot(e, [r["target_boundary_fraction"] for r in epochs], "-o", label="target (predicted)")
    axes[1].axhline(epochs[0]["source_boundary_fraction"], color="k", ls="--", lw=1,
                    label="source (predicted before adaptation)")
    if epochs[0].get("source_label_fraction") is not None:
        axes[1].axhline(epochs[0]["source_label_fraction"], color="gray", ls=":", lw=1, label="source (labels)")
    axes[1].set(xlabel="epoch", ylabel="boundary fraction")
    axes[1].legend()
    axes[2].plot(e, [r["target_entropy"] for r in epochs], "-o")
    axes[2].set(xlabel="epoch", ylabel="mean entropy (target)", ylim=(0, None))
    src = [r["source_val_boundary_jaccard"] for r in epochs]
    if any(v is not None for v in src):
        axes[3].plot(e, [np.nan if v is None else v for v in src], "-o", label="source validation")
    tgt = [r["target"]["boundary_jaccard"] if r.get("target") else None for r in epochs]
    if any(v is not None for v in tgt):
        axes[3].plot(e, [np.nan if v is None else v for v in tgt], "--s", label="target (evaluation only)")
    axes[3].set(xlabel="epoch", ylabel="boundary Jaccard", ylim=(0, 1))
    axes[3].legend()
    for ax in axes[1:]:
        ax.set_xticks(e)
    return fig
