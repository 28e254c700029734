"""Training to convergence on a user's own volume: sizes by device, not by the book's clock.

The book's presets (:mod:`emseg_tutorial.presets`) fix a number of steps so that a chapter fits
its time budget. A researcher training on their own volume wants the best model the machine
gives in the time they allow: :func:`converge_config` returns a
:class:`~emseg_tutorial.train.TrainConfig` that trains until the validation score stops
improving (``patience`` validations), the learning rate halving on plateaus, the best
validation's weights kept, within ``budget`` minutes (``steps`` is only a cap).

The sizes of :data:`CONVERGE` were chosen by the ablation in ``benchmarks/convergence.py``
(patch, batch, learning rate, schedule, jitter, augmentation; score against wall-clock time on
the twins at the ``cpu`` volume size, seed 0, 2 CPU cores, one seed per setting), never on
target data; its results are in ``benchmarks/results/ablation.txt``. The mild intensity
augmentation (``augment="flips+intensity"``) gained 0.017 mean Jaccard at a 2-minute budget and
0.002 at 10 minutes (0.764 against 0.762), so convergence runs use it; elastic deformation lost
0.06 at 2 minutes and stays an option (``train --augment``). A larger learning rate (2e-3) and
smaller batches (4) gained at 2 minutes only because they take more, faster steps early; the
10-minute test of the learning rate (1e-3 with shorter patience) stopped early below the
reference, so 5e-4 stays. The ``gpu`` sizes follow the ``cpu`` choices, unmeasured on a GPU.

Examples
--------
>>> cfg = converge_config("cpu", task="boundary", weights="distance", budget=5)
>>> cfg.budget, cfg.patch, cfg.lr_schedule, cfg.keep_best
(5.0, 128, 'plateau', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .supervised import TrainConfig


@dataclass(frozen=True)
class ConvergeSize:
    """Sizes of a run to convergence on one kind of device.

    Attributes
    ----------
    budget : float
        Default time budget in minutes (``train`` without ``--steps`` or ``--budget``).
    patch, batch_size : int
        Patch side and patches per step.
    lr : float
        Initial Adam learning rate (halved after ``patience // 2`` validations without gain).
    val_every, patience : int
        Steps between validations; validations without gain before stopping.
    max_steps : int
        Cap on optimiser steps.
    model : dict
        :class:`~emseg_tutorial.models.UNet2d` keyword arguments.
    augment : str
        ``TrainConfig.augment`` (a key of :data:`~emseg_tutorial.data.augment.AUGMENTS`).
    """

    budget: float
    patch: int
    batch_size: int
    lr: float
    val_every: int
    patience: int
    max_steps: int = 100_000
    model: dict = field(default_factory=lambda: {"depth": 4, "base_width": 16, "norm": "batch"})
    augment: str = "flips+intensity"


#: Sizes by device kind: ``cpu``, and ``gpu`` for CUDA and MPS.
CONVERGE: dict[str, ConvergeSize] = {
    # patience in steps (val_every x patience = 600) longer than the validation score's noise: with
    # val_every 25 and patience 8 (lr 1e-3) a 10-minute run stopped at step 600 below the reference
    "cpu": ConvergeSize(budget=10.0, patch=128, batch_size=8, lr=5e-4, val_every=50, patience=12),
    "gpu": ConvergeSize(budget=20.0, patch=256, batch_size=8, lr=5e-4, val_every=100, patience=10,
                        model={"depth": 4, "base_width": 32, "norm": "batch"}),
}


def converge_size(device: str | torch.device | None) -> ConvergeSize:
    """The :data:`CONVERGE` sizes of ``device`` (None: the best available, as training picks it).

    Examples
    --------
    >>> converge_size("cpu").patch
    128
    """
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return CONVERGE["cpu" if kind == "cpu" else "gpu"]


def converge_config(device: str | torch.device | None, *, task: str, weights: str, budget: float | None = None,
                    patience: int | None = None, **overrides) -> TrainConfig:
    """A :class:`~emseg_tutorial.train.TrainConfig` that trains to convergence on ``device``.

    ``budget`` (minutes) and ``patience`` default to :data:`CONVERGE`'s; any other
    :class:`~emseg_tutorial.train.TrainConfig` field may be given in ``overrides`` (``loss``,
    ``jitter``, ``augment``, ``seed``, ``precision``, ``val_slices``, or a size).

    Examples
    --------
    >>> converge_config("cpu", task="multiclass", weights="entropy", patience=3).patience
    3
    """
    size = converge_size(device)
    settings = dict(steps=size.max_steps, batch_size=size.batch_size, patch=size.patch, lr=size.lr,
                    val_every=size.val_every, model=dict(size.model), augment=size.augment,
                    budget=float(budget or size.budget),
                    patience=patience or size.patience, lr_schedule="plateau", keep_best=True,
                    device=None if device is None else str(device))
    return TrainConfig(task=task, weights=weights, **{**settings, **overrides})


def with_budget(config: TrainConfig, budget: float | None, patience: int | None = None,
                steps: int | None = None) -> TrainConfig:
    """``config`` (a preset's) trained to convergence: ``budget`` minutes, ``patience``
    validations (default: :data:`CONVERGE`'s), plateau schedule, best weights kept, at most
    ``steps`` steps (default: :attr:`ConvergeSize.max_steps`).

    Examples
    --------
    >>> from emseg_tutorial.paper.stages import train_config
    >>> from emseg_tutorial.presets import get_preset
    >>> cfg = with_budget(train_config(get_preset("ci"), task="boundary", weights="none"), 2)
    >>> cfg.budget, cfg.keep_best, cfg.steps
    (2.0, True, 100000)
    """
    size = converge_size(config.device)
    fields = {**config.to_dict(), "budget": float(budget or size.budget), "patience": patience or size.patience,
              "lr_schedule": "plateau", "keep_best": True, "steps": steps or size.max_steps}
    return TrainConfig(**fields)
