"""Run any registered adaptation method: what the command line and chapter 6 both call.

:func:`run_method` adapts a source model with one method (or a variant of one), as its record
in :mod:`.registry` says, and returns a :class:`MethodRun` whose ``epochs`` are the run's
per-epoch reports (:mod:`.diagnostics`), epoch 0 being the model before adaptation:

* a trained method (``paper``, ``conditional-paper``, ``conditional``, ``adaptsegnet``,
  ``advent``, ``selftrain``, and any registered with a ``step``) runs the loop of :mod:`.loop`,
  one report per epoch;
* a one-pass method (``adabn``: batch-norm statistics re-estimated on the target;
  ``histmatch``: target volumes matched to the source's histogram) runs its ``one_pass``
  function once: deterministic, one report. Volumes it returns (histmatch's matched target)
  are in :attr:`MethodRun.volumes`.

Variants (ablations) add settings to a method: ``conditional-raw`` (``conditional`` without
rank-normalised images), ``paper-soft-real`` (label-smoothed real maps, ``eps`` = 0.1, fixed
without looking at any target score) and ``paper-hard-fake`` (straight-through hard target
predictions).

Examples
--------
>>> method_names()[-2:]
('adabn', 'histmatch')
>>> resolve("conditional-raw")
('conditional', {'condition_image': 'raw'})
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .._validate import check_image
from ..data.normalize import Normalizer, normalizer_of
from ..data.volume import Volume
from ..devices import pick_device
from .diagnostics import (add_epoch, boundary_snapshot, epoch_report, label_free_choice, new_history,
                          oracle_choice, reference_of, source_boundary_prior, source_reference)
from .loop import AdaptConfig, adapt, check_boundary_model, check_slice_size, source_codes, warn_degenerate
from .registry import get_method, method_names, resolve



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
    #: file name -> volume a one-pass method produced (histmatch: the matched target)
    volumes: dict[str, np.ndarray] = field(default_factory=dict)
    #: a trained method's ``history["stop"]``: why it stopped, the epoch whose weights ``model`` holds
    stop: dict | None = None

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


def run_method(name: str, model: torch.nn.Module, source: Volume, target_image: np.ndarray, *,
               config_kwargs: dict, source_val: Volume | None = None, target_eval: Volume | None = None,
               initial_report: dict | None = None, snapshot_slice: int | None = None,
               progress: bool = True, target_name: str = "target image",
               checkpoint: str | os.PathLike | None = None, resume: dict | None = None,
               target_normalizer: Normalizer | None = None) -> MethodRun:
    """Adapt ``model`` with one method (or variant) and return its :class:`MethodRun`.

    ``source`` holds the source labels and, where the method needs it
    (:meth:`~.registry.Method.needs_source_image`), the image (``source.image`` may be None
    otherwise). ``config_kwargs`` are :class:`~emseg_tutorial.adapt.AdaptConfig` arguments (the
    variant's overrides win); a one-pass method reads only its record's ``options`` of them. A
    target whose slices are too small (:func:`~emseg_tutorial.adapt.loop.check_slice_size`;
    messages name ``target_name``) is refused before any work. ``checkpoint`` and ``resume`` make
    a trained method's run resumable (see :func:`~.loop.adapt`); a one-pass method has nothing to
    resume. ``target_normalizer`` is the target volume's one normaliser when the caller has it
    (else computed once here); the adaptation, AdaBN's statistics and every report share it.
    """
    record = get_method(name)
    method, overrides = resolve(name)
    seed = config_kwargs.get("seed")
    start = time.perf_counter()
    if record.trains:  # adapt() checks the source labels, once
        cfg = {**config_kwargs, **overrides, "method": method}
        res = adapt(model, source.labels, target_image, AdaptConfig(**cfg), source_image=source.image,
                    source_val=source_val, target_eval=target_eval, snapshot_slice=snapshot_slice,
                    initial_report=initial_report, progress=progress, target_name=target_name,
                    checkpoint=checkpoint, resume=resume, target_normalizer=target_normalizer)
        return MethodRun(name, seed, res.history["epochs"], res.snapshots, time.perf_counter() - start, res.model,
                         res.discriminator, stop=res.history.get("stop"))

    if resume is not None:
        raise ValueError(f"method {name!r} has no training to resume: it runs in one pass")
    settings = {k: v for k, v in config_kwargs.items() if k in record.options}
    task = settings.get("task") or "boundary"
    check_boundary_model(model, task=task)
    target_image = check_image(target_image, target_name)
    check_slice_size(target_image, target_name)
    warn_degenerate(target_image, target_name)
    labels = source_codes(source.labels, task=task)  # the one check of the source labels on this path
    record.check_source_image(settings, source.image)
    stride = settings.get("report_stride")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"method {name!r}: config_kwargs needs report_stride, an integer >= 1, got {stride!r} "
                         "(emseg_tutorial.paper.method_settings builds them from a preset)")
    device = pick_device(settings.get("device"))
    norm = normalizer_of(target_image, target_normalizer)
    prior = (reference_of(initial_report) if initial_report is not None
             else source_reference(model, source_boundary_prior(labels), device, source_val, stride))
    if initial_report is None:
        initial_report = epoch_report(model, target_image, prior, device, source_val, target_eval, stride,
                                      normalizer=norm, task=task)
    history = new_history({"method": method, **settings}, initial_report)
    out = record.one_pass(model, source.image, target_image, target_eval, settings=settings, normalizer=norm,
                          device=device, progress=progress)
    if set(out.volumes) != set(record.outputs):
        raise RuntimeError(f"method {name!r} returned the files {sorted(out.volumes)}, but its record says "
                           f"{sorted(record.outputs)}")
    add_epoch(history, epoch_report(out.model, out.target_image, prior, device, source_val, out.target_eval, stride,
                                    normalizer=norm if out.target_image is target_image else None, task=task))
    snaps = []
    if out.target_eval is not None:
        z = out.target_eval.shape[0] // 2 if snapshot_slice is None else snapshot_slice
        snaps = [boundary_snapshot(model, target_eval.image, z, device, normalizer=target_eval.normalizer),
                 boundary_snapshot(out.model, out.target_eval.image, z, device, normalizer=out.target_eval.normalizer)]
    return MethodRun(name, None, history["epochs"], snaps, time.perf_counter() - start, out.model,
                     volumes=dict(out.volumes))
