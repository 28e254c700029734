"""Run-size presets: how big the volumes are and how long the networks train.

Four presets trade time for fidelity. ``ci`` is the smallest setting that still runs every
code path (the test suite and its notebook runs); ``lab`` is for a timed class (a 3-hour lab on a laptop CPU or a Colab T4), chosen by the
instructor, never a default: the same U-Net as ``cpu`` trained for half as many steps on smaller
patches and volumes, so every chapter's training is a short wait and students spend the session
reading and on the exercises; ``cpu`` is the default without CUDA (the whole book on a 2-core
laptop within the budget README states, with results worth reading: the measured times are in
``emseg_tutorial/_data/timings.json``); ``gpu`` is the default with CUDA and
runs at the paper's scale (too long for a timed lab, even on a T4).

A preset is plain data, and the one source of every size: the config builders of
:mod:`emseg_tutorial.paper.stages` read it, and the configs themselves
(:class:`~emseg_tutorial.train.TrainConfig`, :class:`~emseg_tutorial.adapt.AdaptConfig`) have
no sizes of their own. Which one a run uses is decided by :func:`emseg_tutorial.setup`
(argument, else the environment variable ``EMSEG_PRESET``, else the hardware), the one place
the ``EMSEG_*`` variables are read; everything below receives the chosen preset.

Examples
--------
>>> get_preset("ci").source_shape
(16, 128, 128)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


def _check_counts(owner: str, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}.{key} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class ComparisonSize:
    """How long chapter 6's method comparison runs (every method x ``seeds`` runs, so each run
    is shorter than chapter 5's adaptation).

    Attributes
    ----------
    seeds : int
        Adaptation seeds per trained method (deterministic methods run once, ablations with the
        first seed).
    epochs, steps_per_epoch, batch_size : int
        Length and batch of each adaptation run.
    lr_g : float
        Adam learning rate of the U-Net in every run (every method gets the same).
    report_stride : int
        Every n-th slice for the label-free diagnostics after each epoch.
    eval_stride : int
        Every n-th slice of the held-out target volume is scored: the same slices for every
        method and for the source model.

    Examples
    --------
    >>> get_preset("ci").comparison.adapt_settings()["steps_per_epoch"]
    2
    """

    seeds: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    lr_g: float
    report_stride: int
    eval_stride: int

    def __post_init__(self):
        _check_counts("ComparisonSize", {k: v for k, v in asdict(self).items() if k != "lr_g"})
        if not self.lr_g > 0:
            raise ValueError(f"ComparisonSize.lr_g must be > 0, got {self.lr_g!r}")

    def adapt_settings(self) -> dict:
        """The :class:`~emseg_tutorial.adapt.AdaptConfig` fields this size sets, by name."""
        return {"epochs": self.epochs, "steps_per_epoch": self.steps_per_epoch, "batch_size": self.batch_size,
                "lr_g": self.lr_g, "report_stride": self.report_stride}


@dataclass(frozen=True)
class WeightingSize:
    """Chapter 4's seed table of Experiment 2's weightings.

    Attributes
    ----------
    seeds : int
        Fine-tuning seeds per weighting, all from one M1.
    eval_stride : int
        Every n-th slice of the held-out source volume is scored, with pixel scores only (so the
        extra runs cost training steps and little else).

    Examples
    --------
    >>> get_preset("cpu").weighting
    WeightingSize(seeds=3, eval_stride=2)
    """

    seeds: int
    eval_stride: int

    def __post_init__(self):
        _check_counts("WeightingSize", asdict(self))


@dataclass(frozen=True)
class Preset:
    """Sizes for one run of the book or the command line.

    Attributes
    ----------
    name : str
        ``"ci"``, ``"lab"``, ``"cpu"`` or ``"gpu"``.
    source_shape, target_shape : tuple of int
        ``(Z, Y, X)`` of the synthetic source (FIBSEM twin) and target (SNEMI3D twin) volumes.
    model : dict
        :class:`~emseg_tutorial.models.UNet2d` keyword arguments (depth, width, norm).
    patch, batch_size : int
        Side of the square training patches and patches per optimiser step.
    steps_per_iteration : float
        Optimiser steps per iteration of the paper (the paper's stages and their iteration
        budgets are in :mod:`emseg_tutorial.paper.stages`).
    lr : float
        Adam learning rate of supervised training. The paper's 1e-4 at the ``gpu`` preset; the
        CPU presets see far fewer pixels per iteration and use 5e-4 so the networks converge
        within their budget (chosen on the source's held-out split, never on target labels).
    val_every : int
        Steps between validation passes.
    adapt_epochs, adapt_steps_per_epoch : int
        Length of chapter 5's adversarial adaptation (the paper shows 4 epochs).
    adapt_report_stride : int
        Chapter 5's label-free diagnostics after each epoch use every n-th slice (1: all).
    discriminator : dict
        :class:`~emseg_tutorial.models.PatchDiscriminator` keyword arguments.
    comparison : ComparisonSize
        Chapter 6's method comparison.
    weighting : WeightingSize
        Chapter 4's seed table of Experiment 2's weightings.
    seed : int
        Seed of the training volumes; ``seed + 1`` makes the held-out evaluation volumes.
    """

    name: str
    source_shape: tuple[int, int, int]
    target_shape: tuple[int, int, int]
    model: dict = field(default_factory=lambda: {"depth": 4, "base_width": 16, "norm": "batch"})
    patch: int = 128
    batch_size: int = 8
    steps_per_iteration: float = 4.0
    lr: float = 1e-4
    val_every: int = 40
    adapt_epochs: int = 4
    adapt_steps_per_epoch: int = 40
    adapt_report_stride: int = 1
    discriminator: dict = field(default_factory=lambda: {"width": 32, "depth": 4, "norm": None})
    comparison: ComparisonSize = ComparisonSize(seeds=3, epochs=4, steps_per_epoch=40, batch_size=8, lr_g=1e-4,
                                                report_stride=1, eval_stride=1)
    weighting: WeightingSize = WeightingSize(seeds=3, eval_stride=2)
    seed: int = 0

    def __post_init__(self):
        for key, kind in (("comparison", ComparisonSize), ("weighting", WeightingSize)):
            if not isinstance(getattr(self, key), kind):
                raise TypeError(f"Preset.{key} must be a {kind.__name__}, got {type(getattr(self, key)).__name__}")

    def to_dict(self) -> dict:
        """Plain ``dict`` of the preset (for checkpoints and JSON histories)."""
        return asdict(self)


PRESETS: dict[str, Preset] = {
    # Every code path, in seconds: tiny volumes and network, a fraction of a step per iteration.
    "ci": Preset(name="ci", source_shape=(16, 128, 128), target_shape=(12, 128, 128),
                 model={"depth": 3, "base_width": 8, "norm": "batch"}, patch=64, batch_size=4,
                 steps_per_iteration=0.25, lr=5e-4, val_every=10, adapt_epochs=2, adapt_steps_per_epoch=3,
                 discriminator={"width": 8, "depth": 3, "norm": None},
                 comparison=ComparisonSize(seeds=3, epochs=2, steps_per_epoch=2, batch_size=2,
                                            lr_g=1e-4, report_stride=2, eval_stride=2)),
    # A timed class (laptop CPU or Colab T4): cpu's U-Net and patches, 192 x 192 slices, 2 optimiser
    # steps of 8 patches of 96 x 96 per paper iteration (half as many as cpu), shorter adaptation, a
    # comparison over 3 seeds of 2 epochs of 8 steps.
    "lab": Preset(name="lab", source_shape=(32, 192, 192), target_shape=(24, 192, 192),
                  model={"depth": 4, "base_width": 16, "norm": "batch"}, patch=96, batch_size=8,
                  steps_per_iteration=2.0, lr=5e-4, val_every=20, adapt_epochs=4, adapt_steps_per_epoch=20,
                  comparison=ComparisonSize(seeds=3, epochs=2, steps_per_epoch=8, batch_size=4,
                                            lr_g=1e-4, report_stride=4, eval_stride=2)),
    # A 2-core laptop: 256 x 256 slices, 4 optimiser steps of 8 patches of 96 x 96 per paper
    # iteration. 96 x 96 patches, not 128 x 128, so that with the seeds of chapter 4's table the
    # book fits its time budget (the chapters' times: emseg_tutorial/_data/timings.json).
    "cpu": Preset(name="cpu", source_shape=(48, 256, 256), target_shape=(32, 256, 256),
                  model={"depth": 4, "base_width": 16, "norm": "batch"}, patch=96, batch_size=8,
                  steps_per_iteration=4.0, lr=5e-4, val_every=40,
                  comparison=ComparisonSize(seeds=3, epochs=2, steps_per_epoch=15, batch_size=4,
                                            lr_g=1e-4, report_stride=6, eval_stride=2)),
    # Paper scale: 500 x 500 FIBSEM slices, SNEMI3D-sized target slices (1024 x 1024); one
    # paper iteration is read as one pass over the source slices (200 slices / 8 per step).
    "gpu": Preset(name="gpu", source_shape=(200, 500, 500), target_shape=(100, 1024, 1024),
                  model={"depth": 4, "base_width": 32, "norm": "batch"}, patch=256, batch_size=8,
                  steps_per_iteration=25.0, lr=1e-4, val_every=250, adapt_steps_per_epoch=250,
                  discriminator={"width": 64, "depth": 4, "norm": None},
                  comparison=ComparisonSize(seeds=3, epochs=4, steps_per_epoch=250, batch_size=8,
                                            lr_g=1e-4, report_stride=2, eval_stride=1)),
}


def default_preset_name() -> str:
    """``"gpu"`` when CUDA is available, else ``"cpu"``."""
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return "cpu"


def get_preset(name: str | None = None) -> Preset:
    """Return the preset ``name`` (any case), or the hardware's default when None.

    Raises
    ------
    ValueError
        If the name is not a known preset.

    Examples
    --------
    >>> get_preset("CPU").name
    'cpu'
    """
    if name is None:
        name = default_preset_name()
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[key]
