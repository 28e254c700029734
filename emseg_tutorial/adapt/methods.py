"""The adaptation methods as one registry: what the command line and chapter 6 both run.

:func:`run_method` adapts a source model with one method (or a variant of one) and returns a
:class:`MethodRun` whose ``epochs`` are the run's per-epoch reports (:mod:`.diagnostics`),
epoch 0 being the model before adaptation:

* the trained methods (:data:`~.loop.METHODS`: ``paper``, ``conditional-paper``, ``conditional``,
  ``adaptsegnet``, ``advent``, ``selftrain``) run the loop of :mod:`.loop`, one report per epoch;
* ``adabn``: the source model with batch-norm statistics re-estimated on the target
  (:mod:`.adabn`); deterministic, one report;
* ``histmatch``: the source model applied to target volumes whose histogram was matched to the
  source's (:mod:`~emseg_tutorial.data.histmatch`); no training, deterministic, one report.

Variants add settings to a method (:data:`VARIANTS`; chapter 6 runs them as ablations):

* ``conditional-raw``: ``conditional`` (source loss kept) without rank-normalised images (the
  domain shortcut left open);
* ``paper-soft-real``: ``paper`` with label-smoothed real maps (``eps`` = 0.1, a fixed value
  chosen without looking at any target score): the hard-vs-soft cue weakened;
* ``paper-hard-fake``: ``paper`` with straight-through hard target predictions: the cue removed,
  the discriminator sees one-hot maps on both sides.

Examples
--------
>>> ALL_METHODS[-2:]
('adabn', 'histmatch')
>>> resolve("conditional-raw")
('conditional', {'condition_image': 'raw'})
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.histmatch import match_to_source
from ..data.volume import Volume
from ..devices import pick_device
from .adabn import adapt_batchnorm
from .diagnostics import (add_epoch, boundary_snapshot, epoch_report, label_free_choice, new_history,
                          oracle_choice, source_boundary_prior)
from .loop import METHODS, AdaptConfig, adapt, check_slice_size

ALL_METHODS: tuple[str, ...] = (*METHODS, "adabn", "histmatch")
DETERMINISTIC = ("adabn", "histmatch")
#: name -> (method, AdaptConfig overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "conditional-raw": ("conditional", {"condition_image": "raw"}),
    "paper-soft-real": ("paper", {"real_smoothing": 0.1}),
    "paper-hard-fake": ("paper", {"hard_fake": True}),
}
SCORES = ("boundary_jaccard", "boundary_f1", "adapted_rand_error")


@dataclass
class MethodRun:
    """One method at one seed: per-epoch reports, target snapshots and the adapted model."""

    name: str
    seed: int | None
    epochs: list[dict]
    snapshots: list[np.ndarray]
    seconds: float
    model: torch.nn.Module | None = None
    discriminator: torch.nn.Module | None = None

    @property
    def last(self) -> int:
        return self.epochs[-1]["epoch"]

    @property
    def label_free(self) -> int:
        return label_free_choice(self.epochs)

    @property
    def oracle(self) -> int:
        return oracle_choice(self.epochs)

    def scores(self, epoch: int) -> dict:
        return self.epochs[epoch]["target"]


def resolve(name: str) -> tuple[str, dict]:
    """``(method, overrides)`` of a method or variant name."""
    if name in VARIANTS:
        return VARIANTS[name]
    if name in ALL_METHODS:
        return name, {}
    raise ValueError(f"unknown method {name!r}; expected one of {list(ALL_METHODS) + list(VARIANTS)}")


def run_method(name: str, model: torch.nn.Module, source: Volume, target_image: np.ndarray, *,
               config_kwargs: dict, source_val: Volume | None = None, target_eval: Volume | None = None,
               initial_report: dict | None = None, snapshot_slice: int | None = None,
               progress: bool = True, target_name: str = "target image",
               checkpoint: str | os.PathLike | None = None, resume: dict | None = None) -> MethodRun:
    """Adapt ``model`` with one method (or variant) and return its :class:`MethodRun`.

    ``config_kwargs`` are :class:`~emseg_tutorial.train.AdaptConfig` arguments (the variant's
    overrides win). ``adabn`` and ``histmatch`` ignore the training settings. A target whose
    slices are too small (:func:`~emseg_tutorial.adapt.loop.check_slice_size`; messages name
    ``target_name``) is refused before any work. ``checkpoint`` and ``resume`` make a trained
    method's run resumable (see :func:`~.loop.adapt`); the one-shot methods have nothing to resume.
    """
    method, overrides = resolve(name)
    seed = config_kwargs.get("seed")
    start = time.perf_counter()
    if method in METHODS:
        cfg = {**config_kwargs, **overrides, "method": method}
        res = adapt(model, source.labels, target_image, AdaptConfig(**cfg), source_image=source.image,
                    source_val=source_val, target_eval=target_eval, snapshot_slice=snapshot_slice,
                    initial_report=initial_report, progress=progress, target_name=target_name,
                    checkpoint=checkpoint, resume=resume)
        return MethodRun(name, seed, res.history["epochs"], res.snapshots, time.perf_counter() - start, res.model,
                         res.discriminator)

    if resume is not None:
        raise ValueError(f"{name} has no training to resume: it runs in one pass")
    check_slice_size(np.asarray(target_image), target_name)
    device = pick_device(config_kwargs.get("device"))
    stride = config_kwargs.get("report_stride", 1)
    prior = source_boundary_prior(source.labels)
    if initial_report is None:
        initial_report = epoch_report(model, target_image, prior, device, source_val, target_eval, stride)
    history = new_history({"method": method, **config_kwargs}, initial_report)
    eval_volume = target_eval
    if method == "adabn":
        adapted = adapt_batchnorm(model, target_image, device=device, progress=progress)
    else:  # histmatch: the model is unchanged, the target images are remapped
        adapted = model
        target_image = match_to_source(target_image, source.image)
        if target_eval is not None:
            eval_volume = Volume(match_to_source(target_eval.image, source.image), target_eval.labels,
                                 target_eval.voxel_size, f"{target_eval.name}-histmatched")
    add_epoch(history, epoch_report(adapted, target_image, prior, device, source_val, eval_volume, stride))
    snaps = []
    if eval_volume is not None:
        z = eval_volume.shape[0] // 2 if snapshot_slice is None else snapshot_slice
        snaps = [boundary_snapshot(model, target_eval.image, z, device, normalizer=target_eval.normalizer),
                 boundary_snapshot(adapted, eval_volume.image, z, device, normalizer=eval_volume.normalizer)]
    return MethodRun(name, None, history["epochs"], snaps, time.perf_counter() - start, adapted)
