"""Figures for the book: slices with label overlays, reslices, histograms, drift, weight maps.

Every function draws into matplotlib axes it is given (or creates a figure) and returns the
figure, so notebooks stay short and the rendered book shows the same pictures.

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
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from .data.stats import slice_means, slice_stds
from .data.volume import Volume
from .labels import BOUNDARY, class_fractions, class_names
from .weights import entropy_weight_map, smoothed_distance_map

#: Colour of every label code (0 unlabelled is transparent in overlays).
LABEL_COLORS = {0: (0, 0, 0, 0), 1: "#ffb000", 2: "#1f9e89", 3: "#e7298a", 4: "#7570b3"}


def use_book_style() -> None:
    """Figure defaults for the book: readable fonts, no grid clutter, compact layout."""
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 120, "font.size": 10, "axes.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "image.interpolation": "nearest",
        "figure.constrained_layout.use": True,
    })


def label_cmap(task: str = "multiclass") -> ListedColormap:
    """Colormap indexed by label code (0 transparent)."""
    n = max(class_names(task)) + 1
    colors = [LABEL_COLORS[c] for c in range(n)]
    if task == "boundary":
        colors[2] = LABEL_COLORS[2]
    return ListedColormap(colors)


def label_legend(ax, task: str = "multiclass", **kwargs) -> None:
    """Add a legend of the label colours to ``ax``."""
    handles = [Patch(color=LABEL_COLORS[c], label=n) for c, n in class_names(task).items()]
    ax.legend(handles=handles, **{"loc": "lower right", "fontsize": 8, "framealpha": 0.8, **kwargs})


def _gray(ax, image: np.ndarray, **kwargs) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else None, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])


def overlay(ax, image: np.ndarray, labels: np.ndarray, task: str = "multiclass", alpha: float = 0.45,
            title: str | None = None) -> None:
    """Draw a 2D ``image`` with its ``labels`` on top (code 0 left clear)."""
    _gray(ax, image)
    ax.imshow(np.ma.masked_equal(labels, 0), cmap=label_cmap(task), vmin=0,
              vmax=max(class_names(task)), alpha=alpha, interpolation="nearest")
    if title:
        ax.set_title(title)


def reslice(ax, volume: Volume, y: int | None = None, title: str | None = None) -> None:
    """Draw the XZ plane at row ``y`` with z stretched to the physical voxel size."""
    y = volume.shape[1] // 2 if y is None else y
    aspect = volume.anisotropy or 1.0
    _gray(ax, volume.image[:, y, :], aspect=aspect)
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    if title:
        ax.set_title(title)


def show_domains(volumes: dict[str, Volume], z: int | None = None, task: str = "multiclass"):
    """One row per volume: an XY slice, the same slice with labels, an XZ reslice.

    Parameters
    ----------
    volumes : dict of str to Volume
        Title -> volume.
    z : int, optional
        Slice index (default: the middle slice of each volume).
    """
    fig, axes = plt.subplots(len(volumes), 3, figsize=(11, 3.7 * len(volumes)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1.3]})
    for row, (name, v) in zip(axes, volumes.items()):
        k = v.shape[0] // 2 if z is None else min(z, v.shape[0] - 1)
        _gray(row[0], v.image[k])
        row[0].set_title(f"{name}: XY slice {k}")
        if v.labels is not None:
            overlay(row[1], v.image[k], v.labels[k], task, title="labels")
            label_legend(row[1], task)
        else:
            row[1].axis("off")
        reslice(row[2], v, title=f"XZ reslice ({v.voxel_size[0]:g} nm z step)" if v.voxel_size else "XZ reslice")
    return fig


def neighbour_slices(volume: Volume, z: int | None = None, count: int = 3, crop: int = 96):
    """Consecutive slices of one crop side by side, membranes outlined from the labels.

    Shows how much walls move between neighbouring slices (little when isotropic).
    """
    z = volume.shape[0] // 2 if z is None else z
    z = min(max(z, 0), volume.shape[0] - count)
    c = min(crop, volume.shape[1], volume.shape[2])
    fig, axes = plt.subplots(1, count, figsize=(3.1 * count, 3.3), squeeze=False)
    for i, ax in enumerate(axes[0]):
        _gray(ax, volume.image[z + i, :c, :c])
        if volume.labels is not None:
            ax.contour(volume.labels[z + i, :c, :c] == 1, levels=[0.5], colors=[LABEL_COLORS[1]], linewidths=0.6)
        ax.set_title(f"{volume.name}: z={z + i}", fontsize=9)
    return fig


def class_fraction_bars(volumes: dict[str, Volume], task: str = "multiclass", ax=None):
    """Grouped bars of the fraction of labelled pixels in each class, one group per class."""
    names = list(class_names(task).values())
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.2))
    width = 0.8 / max(len(volumes), 1)
    for i, (title, v) in enumerate(volumes.items()):
        fr = class_fractions(v.labels, task)
        bars = ax.bar(np.arange(len(names)) + i * width, [100 * fr[n] for n in names], width, label=title)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(np.arange(len(names)) + width * (len(volumes) - 1) / 2, names)
    ax.set_ylabel("% of labelled pixels")
    ax.legend(fontsize=8)
    return fig


def intensity_histograms(volumes: dict[str, Volume], ax=None, by_class: bool = True):
    """Intensity histograms of each volume; with ``by_class``, boundary vs the rest separately.

    Overlap between the boundary and non-boundary curves of one domain shows how hard the
    pixels are to tell apart; the shift between domains is the intensity part of the gap.
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
    ax.legend(fontsize=8)
    return fig


def slice_drift(volumes: dict[str, Volume], ax=None):
    """Per-slice mean intensity (band: ± one standard deviation) against depth in nm."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.2))
    for i, (title, v) in enumerate(volumes.items()):
        step = v.voxel_size[0] if v.voxel_size else 1.0
        z = np.arange(v.shape[0]) * step
        m, s = slice_means(v.image), slice_stds(v.image)
        ax.plot(z, m, "-o", ms=2.5, color=f"C{i}", label=title)
        ax.fill_between(z, m - s, m + s, color=f"C{i}", alpha=0.15)
    ax.set_xlabel("depth (nm)")
    ax.set_ylabel("slice mean intensity")
    ax.legend(fontsize=8)
    return fig


def _label_panel(ax, labels: np.ndarray, image: np.ndarray | None, task: str) -> None:
    """Labels alone (opaque colours on black) or over ``image``, with the legend."""
    alone = image is None
    overlay(ax, np.zeros(labels.shape, np.uint8) if alone else image, labels, task,
            alpha=1.0 if alone else 0.45, title="labels")
    label_legend(ax, task, fontsize=7)


def weight_maps_figure(labels_slice: np.ndarray | None, maps: dict[str, np.ndarray],
                       image: np.ndarray | None = None, *, shared: bool = True, ncols: int = 4,
                       task: str = "multiclass", cmap: str = "magma", panel: float = 3.0):
    """The label map of one slice next to weight maps of it, with colorbars.

    Parameters
    ----------
    labels_slice : ndarray of int, (Y, X), or None
        Class codes of the slice, drawn in the first panel (over ``image`` when given);
        ``None`` draws the maps only.
    maps : dict of str to ndarray, each (Y, X)
        Panel title -> map.
    image : ndarray, (Y, X), optional
        The slice's intensities, under the labels.
    shared : bool, optional
        One colour scale and colorbar for all maps (maps on the same scale, e.g. weights
        normalised to mean 1), or one colorbar per panel (different quantities).
    ncols : int, optional
        Panels per row.
    task, cmap, panel : optional
        Label codes of ``labels_slice``, colormap of the maps, panel side in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> labels = np.full((32, 32), 2, np.uint8); labels[:, 15:17] = 1
    >>> fig = weight_maps_figure(labels, {"D": smoothed_distance_map(labels, 0)}, shared=False)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['labels', 'D']
    """
    n = len(maps) + (labels_slice is not None)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    height = panel * nrows * (1.0 if shared else 0.88)  # per-panel colorbars narrow the images
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols + 0.8 * shared, height), squeeze=False)
    axes = list(axes.ravel())
    for ax in axes[n:]:
        ax.axis("off")
    if labels_slice is not None:
        _label_panel(axes.pop(0), labels_slice, image, task)
    vmax = max(float(np.max(m)) for m in maps.values()) if shared else None
    for ax, (title, m) in zip(axes, maps.items()):
        im = ax.imshow(m, cmap=cmap, vmin=0 if shared else None, vmax=vmax)
        ax.set(xticks=[], yticks=[], title=title)
        if not shared:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if shared and maps:
        fig.colorbar(im, ax=axes[:len(maps)], shrink=0.85, pad=0.02, label="weight")
    return fig


def paper_weight_maps_figure(labels_slice: np.ndarray, image: np.ndarray | None = None,
                             size: int = 5, sigma: float = 10.0, ncols: int = 4):
    """The paper's Fig. 3 for one slice: labels, entropy weights, distance transform, smoothed.

    Parameters
    ----------
    labels_slice : ndarray of int, (Y, X)
        Class codes (4-class or boundary task).
    image : ndarray, (Y, X), optional
        Intensities under the labels.
    size : int, optional
        Window side of the label entropy (the paper's 5).
    sigma : float, optional
        Gaussian sigma of the smoothed distance transform (the paper's 10).
    ncols : int, optional
        Panels per row (4: one row as in the paper; 2: a 2 x 2 grid).

    Returns
    -------
    matplotlib.figure.Figure
        Each map with its own colorbar (they are different quantities).
    """
    maps = {f"entropy weights ({size}x{size})": entropy_weight_map(labels_slice, size),
            "distance transform": smoothed_distance_map(labels_slice, 0),
            f"smoothed distance (σ={sigma:g})": smoothed_distance_map(labels_slice, sigma)}
    return weight_maps_figure(labels_slice, maps, image, shared=False, ncols=ncols)


def weight_profiles(profiles: dict[str, np.ndarray], boundary: np.ndarray, ax=None,
                    xlabel: str = "x (pixels)", ylabel: str = "weight"):
    """Curves along one line of a slice, with the boundary pixels of that line shaded.

    Parameters
    ----------
    profiles : dict of str to 1D ndarray
        Legend label -> values along the line.
    boundary : 1D ndarray
        Boundary mask, or class codes (``1`` = boundary), along the same line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3))
    boundary = np.asarray(boundary)
    wall = boundary if boundary.dtype == bool else boundary == BOUNDARY
    x = np.arange(wall.size)
    ax.fill_between(x, 0, 1, where=wall, step="mid", transform=ax.get_xaxis_transform(),
                    color=LABEL_COLORS[1], alpha=0.3, lw=0, label="boundary pixels")
    for label, values in profiles.items():
        ax.plot(x, values, lw=1.4, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, wall.size - 1))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def class_weight_bars(table, ax=None):
    """Mean weight on boundary and on non-boundary pixels for each scheme, ratio on top.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per weighting scheme (the index), columns ``"boundary"`` and
        ``"non-boundary"``: mean weights on the pixels of each class.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    x = np.arange(len(table))
    for i, column in enumerate(["boundary", "non-boundary"]):
        ax.bar(x + (i - 0.5) * 0.4, table[column], 0.4, label=column,
               color=LABEL_COLORS[1] if i == 0 else LABEL_COLORS[2])
    for xi, (b, rest) in zip(x, zip(table["boundary"], table["non-boundary"])):
        ax.annotate(f"{b / rest:.1f}:1", (xi, max(b, rest)), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(x, table.index, rotation=20)
    ax.set_ylabel("mean weight")
    ax.margins(y=0.12)
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------- training and results


def _smooth(values, window: int) -> np.ndarray:
    """Moving average (window shrinks at the start) for noisy per-step losses."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or window <= 1:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


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
    """
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 3.4))
    for i, (name, h) in enumerate(histories.items()):
        ax_loss.plot(h["train"]["step"], _smooth(h["train"]["loss"], smooth), color=f"C{i}", label=name, lw=1.2)
        steps = [v["step"] for v in h.get("val", [])]
        vals = [np.nan if v[score] is None else v[score] for v in h.get("val", [])]
        ax_val.plot(steps, vals, "-o", ms=3, color=f"C{i}", label=name)
    ax_loss.set(xlabel="step", ylabel=f"training loss ({smooth}-step mean)", yscale="log")
    ax_val.set(xlabel="step", ylabel=f"validation {score.replace('_', ' ')}", ylim=(0, 1))
    ax_val.legend(fontsize=8)
    return fig


def boundary_errors(ax, truth: np.ndarray, prediction: np.ndarray, title: str | None = None) -> None:
    """Boundary agreement of one slice: hits white, misses (false negatives) blue, false alarms red."""
    t, p = truth == 1, prediction == 1
    rgb = np.zeros(t.shape + (3,), np.float32)
    rgb[t & p] = (1, 1, 1)
    rgb[t & ~p] = (0.2, 0.45, 1.0)
    rgb[~t & p] = (1.0, 0.25, 0.2)
    rgb[truth == 0] = (0.3, 0.3, 0.3)
    ax.imshow(rgb)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def prediction_panels(image: np.ndarray, truth: np.ndarray, predictions: dict[str, np.ndarray],
                      task: str = "multiclass", crop: int | None = 128, errors: bool = True):
    """Image, ground truth and each model's prediction of one slice (optionally a top-left crop).

    With ``errors``, a second row shows each prediction's boundary hits (white), misses (blue)
    and false alarms (red).
    """
    c = slice(0, crop) if crop else slice(None)
    image, truth = image[c, c], truth[c, c]
    n = len(predictions) + 2
    rows = 2 if errors else 1
    fig, axes = plt.subplots(rows, n, figsize=(2.6 * n, 2.8 * rows), squeeze=False)
    _gray(axes[0, 0], image)
    axes[0, 0].set_title("image", fontsize=9)
    overlay(axes[0, 1], image, truth, task, alpha=0.55)
    axes[0, 1].set_title("ground truth", fontsize=9)
    for ax, (name, pred) in zip(axes[0, 2:], predictions.items()):
        overlay(ax, image, pred[c, c], task, alpha=0.55)
        ax.set_title(name, fontsize=9)
    if errors:
        axes[1, 0].axis("off")
        boundary_errors(axes[1, 1], truth, truth, "boundary (truth)")
        for ax, (name, pred) in zip(axes[1, 2:], predictions.items()):
            boundary_errors(ax, truth, pred[c, c], f"{name}: errors")
    label_legend(axes[0, 1], task, fontsize=7)
    return fig


def score_bars(table, column: str, ax=None, reference: float | None = None, reference_label: str = "paper"):
    """Horizontal bars of one score column of a results table (rows: models)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 0.45 * len(table) + 1))
    values = table[column].astype(float)
    bars = ax.barh(list(table.index)[::-1], values.values[::-1], color="C0")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    if reference is not None:
        ax.axvline(reference, color="k", ls="--", lw=1)
        ax.text(reference, len(table) - 0.4, f" {reference_label} {reference:g}", fontsize=8, va="bottom")
    ax.set_xlim(0, 1)
    ax.set_xlabel(column.replace("_", " "))
    return fig


def adaptation_snapshots(image: np.ndarray, truth: np.ndarray, snapshots: list[np.ndarray], crop: int | None = 160):
    """The paper's Fig. 6: a target slice, its labels, and the boundary probability after each epoch."""
    c = slice(0, crop) if crop else slice(None)
    n = len(snapshots) + 2
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.7), squeeze=False)
    axes = axes[0]
    _gray(axes[0], image[c, c])
    axes[0].set_title("target image", fontsize=9)
    overlay(axes[1], image[c, c], truth[c, c], "boundary", alpha=0.6)
    axes[1].set_title("labels (evaluation only)", fontsize=9)
    for i, (ax, snap) in enumerate(zip(axes[2:], snapshots)):
        ax.imshow(snap[c, c], cmap="magma", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("before (M3)" if i == 0 else f"after epoch {i}", fontsize=9)
    return fig


def adaptation_diagnostics(history: dict, smooth: int = 10):
    """Label-free signals of an adversarial run, and (dashed, evaluation only) target scores.

    Panels: discriminator accuracy on real and fake maps per step; predicted boundary fraction
    on the target against the source's; mean prediction entropy on the target; boundary
    Jaccard on source validation slices and, when available, on the held-out target labels.
    """
    epochs = history["epochs"]
    e = [r["epoch"] for r in epochs]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    t = history["train"]
    axes[0].plot(t["step"], _smooth(t["acc_real"], smooth), label="real (source labels)")
    axes[0].plot(t["step"], _smooth(t["acc_fake"], smooth), label="fake (target predictions)")
    axes[0].axhline(0.5, color="gray", lw=0.8, ls=":")
    axes[0].set(xlabel="step", ylabel="discriminator accuracy", ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    axes[1].plot(e, [r["target_boundary_fraction"] for r in epochs], "-o", label="target (predicted)")
    axes[1].axhline(epochs[0]["source_boundary_fraction"], color="k", ls="--", lw=1, label="source (labels)")
    axes[1].set(xlabel="epoch", ylabel="boundary fraction")
    axes[1].legend(fontsize=7)
    axes[2].plot(e, [r["target_entropy"] for r in epochs], "-o")
    axes[2].set(xlabel="epoch", ylabel="mean prediction entropy (target)", ylim=(0, None))
    src = [r["source_val_boundary_jaccard"] for r in epochs]
    if any(v is not None for v in src):
        axes[3].plot(e, [np.nan if v is None else v for v in src], "-o", label="source validation")
    tgt = [r["target"]["boundary_jaccard"] if r.get("target") else None for r in epochs]
    if any(v is not None for v in tgt):
        axes[3].plot(e, [np.nan if v is None else v for v in tgt], "--s", label="target (labels, evaluation only)")
    axes[3].set(xlabel="epoch", ylabel="boundary Jaccard", ylim=(0, 1))
    axes[3].legend(fontsize=7)
    for ax in axes[1:]:
        ax.set_xticks(e)
    return fig


def jitter_examples(patch: np.ndarray, jitter, n: int = 6, seed: int = 0):
    """One image patch and ``n`` random jitters of it (the M2 -> M3 augmentation)."""
    from .data.normalize import to_unit_range

    rng = np.random.default_rng(seed)
    unit = to_unit_range(patch)
    out = jitter(np.repeat(unit[None], n, axis=0), rng)
    fig, axes = plt.subplots(1, n + 1, figsize=(1.9 * (n + 1), 2.2))
    for ax, img, title in zip(axes, [unit, *out], ["original"] + [f"jitter {i + 1}" for i in range(n)]):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def adversarial_diagram(conditional: bool = False):
    """A diagram of the paper's adversarial step (or, with ``conditional``, its future-work variant)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(10, 3.8))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4.6)
    ax.axis("off")

    def box(x, y, text, color):
        ax.add_patch(FancyBboxPatch((x - 0.85, y - 0.35), 1.7, 0.7, boxstyle="round,pad=0.05",
                                    fc=color, ec="k", lw=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(a, b, text="", color="k", rad=0.0):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color=color,
                                     connectionstyle=f"arc3,rad={rad}", lw=1.2))
        if text:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.22, text, ha="center", fontsize=8, color=color)

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
    arrow((6.85, 1.0), (7.65, 1.75), "real (L2)", "#1b7837")
    if conditional:
        box(3.6, 0.9, "source image +\nGT of a far slice", "#f6e8c3")
        ax.annotate("", xy=(7.7, 1.5), xytext=(4.45, 0.7),
                    arrowprops=dict(arrowstyle="-|>", color="#b2182b", connectionstyle="arc3,rad=0.25"))
        ax.text(5.6, 0.15, "fake (mismatched pair)", fontsize=8, color="#b2182b", ha="center")
    arrow((8.5, 2.4), (3.6, 3.5), color="#2166ac", rad=0.35)
    ax.text(6.0, 4.35, "U-Net update: make D call target predictions real (no supervised loss)",
            ha="center", fontsize=9, color="#2166ac")
    return fig
