"""Supervised training of the 2D U-Net: Experiments 1 and 2 and the jitter step.

One function, :func:`train_supervised`, reads from top to bottom:

1. labels are reduced to the task (4 classes, or one class against the rest: the boundary, or a
   foreground class such as mitochondria);
2. the per-pixel loss weights are computed once for the whole volume
   (:func:`~emseg_tutorial.weight_schemes.weight_map_of_codes`);
3. the last slices are held out for validation, patches are drawn from the rest, on the
   device itself (:class:`~emseg_tutorial.data.patches.PatchSampler`);
4. the model is built, or taken from an earlier checkpoint (its head replaced when the number
   of classes changes: the paper's M1 -> M2 transfer);
5. Adam steps on weighted cross-entropy (mixed precision where the device runs it natively, channels-last; with
   ``compile=True`` through ``torch.compile``, eager where that fails), with a validation
   pass every ``val_every`` steps;
6. the trained model and a history of losses and validation scores are returned.

With ``checkpoint=PATH`` the whole training state (model, optimiser, gradient scaler, random
streams, step, history) is written there atomically every ``checkpoint_every`` steps, and
``resume=load_training_state(PATH)`` continues such a run up to ``config.steps``: a run of 3
steps resumed to 6 gives the same losses and weights as a run of 6 steps (bit for bit on the
CPU). A Colab session that drops loses at most ``checkpoint_every`` steps. The patch stream
resumes on a device of the kind it was drawn on; a state saved on CUDA is refused on a CPU in
one line (:func:`~emseg_tutorial.devices.restore_generator`).

Examples
--------
>>> from emseg_tutorial.data.synthetic import make_volume
>>> vol = make_volume("fibsem", (4, 64, 64), seed=0)
>>> cfg = TrainConfig(task="boundary", weights="distance", steps=2, batch_size=2, patch=32, lr=5e-4,
...                   val_every=2, model={"depth": 2, "base_width": 4})
>>> run = train_supervised(vol.image, vol.labels, cfg, progress=False)
>>> [v["step"] for v in run.history["val"]]
[2]
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .._validate import InputError, check_image, check_pair
from ..data.augment import chain, get_augment, get_jitter
from ..data.normalize import Normalizer
from ..data.patches import PatchSampler
from ..devices import (Precision, adam, check_precision, compile_model, eager_fallback, memory_format, pick_device,
                       precision, set_seed)
from ..labels import TASKS, check_labels, check_task_labels, class_names, for_task, is_foreground_task, num_classes
from ..losses import Diverged, dice_loss, first_non_finite, focal_loss, non_finite_weights, weighted_cross_entropy
from ..metrics import headline_key, pixel_scores
from ..models import build, build_model, check_model
from ..predict import predict_labels
from ..progress import progress as progress_bar
from ..weight_schemes import parse_weight_scheme, weight_map_of_codes
from ..store import (check_inputs, check_resumable, input_fingerprints, restore_model, save_training_state,
                     with_defaults)
from .stopping import MIN_DELTA, EarlyStopping

LOSSES = ("ce", "dice", "ce+dice", "focal")
LR_SCHEDULES = ("constant", "plateau")


@dataclass(kw_only=True)
class TrainConfig:
    """Settings of one supervised run (stored in the checkpoint).

    The fields without a default are the run's sizes and its stage: they come from a preset,
    through :func:`emseg_tutorial.paper.stages.train_config` (and ``stage_config``), so a size
    is written in one place only (:mod:`emseg_tutorial.presets`). The fields with a default
    are not sizes and are the same at every preset: the paper's loss, the validation split,
    no jitter, seed 0, the best device, ``auto`` precision.

    Attributes
    ----------
    task : str
        ``"multiclass"``, ``"boundary"`` or another one-vs-rest task such as ``"mitochondria"``
        (:data:`~emseg_tutorial.labels.TASKS`).
    weights : str
        Loss weights: ``entropy``, ``distance``, ``ratio:R``, ``border`` or ``none``.
    steps, batch_size, patch : int
        Optimiser steps, patches per step, patch side in pixels.
    lr : float
        Adam learning rate.
    val_every : int
        Steps between validation passes (one more runs at the end).
    model : dict
        :class:`~emseg_tutorial.models.UNet2d` keyword arguments (``out_channels`` is set
        from the task).
    loss : {"ce", "dice", "ce+dice", "focal"}
        Weighted cross-entropy (the paper's, the default), soft Dice, their sum, or the focal
        loss (:func:`~emseg_tutorial.losses.focal_loss`, gamma 2, weighted by the same map).
    val_slices : float
        Fraction of slices (at the end of the stack) held out for validation.
    jitter : bool or str
        Random intensity jitter of every patch (the paper's M2 -> M3 step): ``True`` the
        default :class:`~emseg_tutorial.data.augment.Jitter`, or a name of
        :data:`~emseg_tutorial.data.augment.JITTERS` (``"unlike"``: the ablation).
    augment : str
        Augmentation of every patch beyond the jitter, a key of
        :data:`~emseg_tutorial.data.augment.AUGMENTS`: ``"flips"`` (random flips and quarter
        turns, the default and what runs saved before this field did), ``"flips+intensity"``,
        ``"flips+elastic"``, ``"all"`` or ``"none"``.
    seed : int
        Seed of weights initialisation and patch sampling.
    device : str, optional
        ``cpu``, ``cuda``, ``mps``; default: the best available.
    precision : {"auto", "float32", "bfloat16", "float16"}
        Autocast dtype (:func:`~emseg_tutorial.devices.precision`): ``auto`` is bfloat16 on
        recent GPUs and on CPUs with native bfloat16, float16 on older GPUs, else float32.
    budget : float, optional
        Minutes of wall-clock time (a resumed run counts the time it had already spent); the run
        stops at the first validation after the budget is spent, and ``steps`` is then a cap
        (:mod:`emseg_tutorial.train.convergence` sizes such runs).
    patience : int, optional
        Stop after this many validations in a row without a gain of
        :data:`~emseg_tutorial.train.stopping.MIN_DELTA` in the validation score of
        :func:`stopping_key` (mean Jaccard; a foreground task's IoU) (None: never).
    lr_schedule : {"constant", "plateau"}
        ``plateau`` halves the learning rate after ``max(1, patience // 2)`` validations without
        gain (``torch.optim.lr_scheduler.ReduceLROnPlateau``).
    keep_best : bool
        Return the weights of the best validation instead of the last ones.
    """

    task: str
    weights: str
    loss: str = "ce"
    steps: int
    batch_size: int
    patch: int
    lr: float
    val_every: int
    val_slices: float = 0.15
    jitter: bool | str = False
    augment: str = "flips"
    seed: int = 0
    model: dict
    device: str | None = None
    precision: str = "auto"
    budget: float | None = None
    patience: int | None = None
    lr_schedule: str = "constant"
    keep_best: bool = False

    def __post_init__(self):
        check_precision(self.precision)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        parse_weight_scheme(self.weights)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("steps", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):  # NaN and infinity too: they would train to NaN
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        get_jitter(self.jitter)  # a known jitter or none
        get_augment(self.augment)
        if not 0 <= self.val_slices < 1:
            raise ValueError(f"val_slices must be in [0, 1), got {self.val_slices}")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise ValueError(f"budget must be a number of minutes > 0, got {self.budget!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """A trained model, its config and its history (``train`` losses, ``val`` scores)."""

    model: torch.nn.Module
    config: TrainConfig
    history: dict


def split_slices(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation slice indices: the last ``ceil(fraction * n)`` slices validate.

    With a single slice (or ``fraction`` 0) everything trains and nothing validates.
    """
    n_val = int(np.ceil(fraction * n)) if n > 1 and fraction > 0 else 0
    n_val = min(n_val, n - 1)
    return np.arange(n - n_val), np.arange(n - n_val, n)


def validate(model: torch.nn.Module, image: np.ndarray, labels: np.ndarray, task: str,
             device: torch.device, *, normalizer: Normalizer) -> dict:
    """Scores of ``model`` on whole slices: per-class and mean Jaccard, boundary Jaccard and F1
    (of :func:`~emseg_tutorial.metrics.pixel_scores`; a foreground task's IoU and F1 too).

    ``labels`` hold the codes ``0..4`` (reduced to the task's by the metrics).

    ``image`` is the held-out slices of a volume and ``normalizer`` that whole volume's (the one
    the training patches were standardised with), so the scores are those of ``predict`` of the
    whole volume, evaluated on these slices.
    """
    s = pixel_scores(predict_labels(model, image, normalizer=normalizer, device=device), labels, task)
    keys = ("mean_jaccard", "jaccard", "boundary_jaccard", "boundary_f1", "foreground_iou", "foreground_f1")
    return {k: s[k] for k in keys if k in s}


def stopping_key(task: str) -> str:
    """The validation score that early stopping, ``keep_best`` and the plateau schedule follow.

    A foreground task's headline score (:func:`~emseg_tutorial.metrics.headline_key`: its
    two-class mean Jaccard is dominated by the large "rest" class), else the mean Jaccard over
    the task's classes.

    Examples
    --------
    >>> stopping_key("mitochondria"), stopping_key("boundary"), stopping_key("multiclass")
    ('foreground_iou', 'mean_jaccard', 'mean_jaccard')
    """
    return headline_key(task) if is_foreground_task(task) else "mean_jaccard"


#: smallest slice side training takes (the smallest patch; the book's synth minimum, as adaptation's)
MIN_SLICE = 16


class DegenerateDataWarning(UserWarning):
    """Training data a network can learn little or nothing from (a constant image, validation
    slices of one class); the command line prints it as one ``warning:`` line."""


def _slice_range(slices: np.ndarray) -> str:
    return f"slice {slices[0]}" if len(slices) == 1 else f"slices {slices[0]}-{slices[-1]}"


def check_training_data(image: np.ndarray, labels: np.ndarray, task: str, train_z: np.ndarray,
                        val_z: np.ndarray, *, image_name: str = "image", labels_name: str = "labels") -> None:
    """Refuse data no training can learn from, and warn about data it learns little from.

    ``image`` and ``labels`` are checked volumes (``labels`` in the task's codes), ``train_z``
    and ``val_z`` the slices that train and validate (:func:`split_slices`).

    * slices smaller than :data:`MIN_SLICE` pixels: :class:`InputError` naming ``image_name``;
    * labels of one class only in the training slices: :class:`InputError` naming
      ``labels_name`` (the loss has nothing to separate; a model that always answers that class
      would get a perfect and meaningless score);
    * a constant image: :class:`DegenerateDataWarning` (nothing to learn from the image);
    * validation slices whose labels hold one class only: :class:`DegenerateDataWarning` (their
      scores say little).

    Examples
    --------
    >>> labels = np.ones((2, 16, 16), np.uint8)
    >>> check_training_data(np.zeros((2, 16, 16)), labels, "boundary", np.arange(2), np.arange(0),
    ...                     labels_name="lab.tif")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: lab.tif: every labelled pixel of the slices that train (slices 0-1) is boundary (code 1); the boundary task needs at least two classes to learn from (a model that always answers boundary would get a perfect and meaningless score)
    """
    y, x = image.shape[-2:]
    if min(y, x) < MIN_SLICE:
        raise InputError(f"{image_name}: slices of {y} x {x} pixels are too small to train on; training needs at "
                         f"least {MIN_SLICE} x {MIN_SLICE} (the smallest patch)")
    names = class_names(task)
    counts = np.bincount(labels[train_z].ravel(), minlength=max(names) + 1)[1:]
    present = [code for code in names if counts[code - 1] > 0]
    if not present:
        raise InputError(f"{labels_name}: every pixel of the slices that train ({_slice_range(train_z)}) is 0 "
                         f"(unlabelled); nothing to train on")
    if len(present) < 2:
        code = present[0]
        raise InputError(f"{labels_name}: every labelled pixel of the slices that train ({_slice_range(train_z)}) "
                         f"is {names[code]} (code {code}); the {task} task needs at least two classes to learn from "
                         f"(a model that always answers {names[code]} would get a perfect and meaningless score)")
    lo, hi = image.min(), image.max()
    if lo == hi:
        warnings.warn(f"{image_name}: every voxel is {lo:g} (a constant image); the network has nothing to learn "
                      f"from it and its scores mean nothing", DegenerateDataWarning, stacklevel=3)
    if len(val_z):
        val = np.unique(labels[val_z])
        val = [int(c) for c in val if c in names]
        if len(val) == 1:
            verb = "holds" if len(val_z) == 1 else "hold"
            warnings.warn(f"{labels_name}: the validation {_slice_range(val_z)} {verb} only {names[val[0]]} (code "
                          f"{val[0]}); their scores say little about the model", DegenerateDataWarning, stacklevel=3)


def training_sampler(config: TrainConfig, image: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, *,
                     device: str | torch.device = "cpu", slices=None,
                     normalizer: Normalizer | None = None) -> PatchSampler:
    """The patch stream of a run: ``config``'s patch size, seed, jitter and augmentation
    (flips and turns, then :data:`~emseg_tutorial.data.augment.AUGMENTS`' elastic deformation
    and intensity changes after the jitter), drawing from ``slices`` of the task's ``labels``.

    Examples
    --------
    >>> cfg = TrainConfig(task="boundary", weights="none", steps=1, batch_size=2, patch=16, lr=1e-3,
    ...                   val_every=1, model={}, augment="flips+elastic")
    >>> lab = np.ones((1, 24, 24), np.uint8); lab[:, ::6] = 2
    >>> training_sampler(cfg, lab * 100, lab, None).elastic is not None
    True
    """
    augment = get_augment(config.augment)
    return PatchSampler(image, labels, weights, device=device, patch=config.patch, slices=slices,
                        augment=augment.flips, jitter=chain(get_jitter(config.jitter), augment.intensity),
                        elastic=augment.elastic, seed=config.seed, normalizer=normalizer)


def _initial_model(config: TrainConfig, init: torch.nn.Module | None) -> torch.nn.Module:
    n = num_classes(config.task)
    if init is None:  # sizes checked before anything is allocated (models.check_kwargs)
        return build("unet2d", {**config.model, "in_channels": 1, "out_channels": n}, "config.model")
    check_model(init, classes=None)  # the head may be replaced below
    model = build_model(init.init_kwargs)
    model.load_state_dict(init.state_dict())
    if model.init_kwargs["out_channels"] != n:
        model.replace_head(n)  # keep every layer but the classifier (M1 -> M2)
    return model


def train_supervised(image: np.ndarray, labels: np.ndarray, config: TrainConfig, *,
                     init: torch.nn.Module | None = None, progress: bool = True,
                     checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
                     resume: dict | None = None, compile: bool = False, image_name: str = "image",
                     labels_name: str = "labels", val_image: np.ndarray | None = None,
                     val_labels: np.ndarray | None = None,
                     val_names: tuple[str, str] = ("val_image", "val_labels")) -> TrainResult:
    """Train a U-Net on one labelled volume.

    Parameters
    ----------
    image : ndarray, (Z, Y, X)
        Raw intensities.
    labels : ndarray, (Z, Y, X)
        Codes 0-4 (0 ignored); reduced to the task's codes here.
    config : TrainConfig
    init : torch.nn.Module, optional
        Start from this model (a copy is trained; the argument is left untouched).
    progress : bool
        Show a progress bar.
    checkpoint : path, optional
        Where to write the resumable training state (:func:`emseg_tutorial.store.save_training_state`).
    checkpoint_every : int, optional
        Steps between two states (default ``config.val_every``); one is also written at the end.
    resume : dict, optional
        A state from :func:`emseg_tutorial.store.load_training_state` of a run with the same config
        (``steps``, ``budget`` and ``device`` aside) and the same ``image``, ``labels`` and (when given) ``init``
        (their fingerprints, :mod:`emseg_tutorial.store.fingerprints`, are saved with the state):
        training continues from its step. Other data is refused before any work
        (:class:`~emseg_tutorial.store.fingerprints.InputChanged`, a ValueError naming the argument).
    compile : bool
        Train through ``torch.compile`` (``EMSEG_COMPILE=1`` in a session); if compiling fails,
        at once or at the first step, a warning says so and training goes on eagerly.
    image_name, labels_name : str
        How messages name the two volumes (their files, say).
    val_image, val_labels : ndarray, optional
        A validation volume of its own: every slice of ``image`` then trains (``val_slices`` is
        not used) and validation scores this volume, normalised on its own.
    val_names : (str, str)
        How messages name the validation volumes.

    Returns
    -------
    TrainResult
        Its ``history["stop"]`` says why the run stopped (``"steps"``, ``"budget"``,
        ``"patience"``), at which step, its best validation and the step whose weights were kept
        (:func:`~emseg_tutorial.train.stopping.stop_reason_text` puts it in words).

    Raises
    ------
    InputError
        Data no training can learn from (slices smaller than :data:`MIN_SLICE`, labels of one
        class; :func:`check_training_data`), before any work; a constant image or validation
        slices of one class are a :class:`DegenerateDataWarning`.
    Diverged
        A loss or a weight became NaN or infinite (checked whenever the losses are read, every
        ``val_every`` steps): the run stops, naming the step and the learning rate.
    """
    image = check_image(image, image_name)
    labels = check_labels(labels, labels_name)
    check_pair(image, labels, image_name, labels_name)
    # what the saved state records of its inputs, checked on resumption before any work
    inputs = (input_fingerprints({"image": image, "labels": labels, "init": init})
              if checkpoint is not None or resume is not None else None)
    if resume is not None:
        check_resumable(with_defaults(resume["config"], TrainConfig), config.to_dict(), RESUMABLE_CHANGES,
                        f"step {resume['step']}")
        inputs = check_inputs(resume, inputs, optional=("init",))
    check_task_labels(labels, config.task, labels_name)  # a foreground class absent from the volume
    codes = labels  # the codes 0..4, which validation scores against (the metrics reduce them)
    labels = for_task(labels, config.task)
    held_out = val_image is not None or val_labels is not None
    train_z, val_z = (np.arange(image.shape[0]), np.arange(0)) if held_out else split_slices(image.shape[0],
                                                                                            config.val_slices)
    check_training_data(image, labels, config.task, train_z, val_z, image_name=image_name, labels_name=labels_name)
    set_seed(config.seed)
    device = pick_device(config.device)

    weights = weight_map_of_codes(labels, config.weights, config.task)  # labels checked above, once
    normalizer = Normalizer.from_volume(image)  # the volume's one: training patches and validation
    val = (_held_out_volume(val_image, val_labels, val_names) if held_out
           else (image[val_z], codes[val_z], normalizer))
    _check_stopping(config, has_validation=len(val[0]) > 0)
    sampler = training_sampler(config, image, labels, weights, device=device, slices=train_z, normalizer=normalizer)

    model = restore_model(resume) if resume is not None else _initial_model(config, init)
    model = model.to(device, memory_format=memory_format(device))
    net = compile_model(model) if compile else model  # what steps; ``model`` holds the weights
    optimizer = adam(model.parameters(), config.lr, device)
    scheduler = _scheduler(optimizer, config)
    stopper = EarlyStopping(config.patience)
    key = stopping_key(config.task)  # the score stopping, keep_best and the schedule follow
    best: dict | None = None  # the best validation's weights (keep_best), on the CPU
    amp = precision(device, config.precision)
    scaler = amp.grad_scaler()
    history: dict = {"train": {"step": [], "loss": []}, "val": [], "val_slices": val_z.tolist()}
    done = 0
    if resume is not None:
        done, history = _resume(resume, config, optimizer, scaler, sampler)
        stopper, best = _resume_stopping(resume, stopper, scheduler)
    start = time.perf_counter() - history.get("seconds", 0.0)
    every = checkpoint_every or config.val_every

    def save_state(step: int) -> None:
        history["seconds"] = time.perf_counter() - start
        extra = {"stopper": stopper.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                 "best": best}
        save_training_state(checkpoint, model=model, optimizer=optimizer, scaler=scaler, step=step,
                            history=history, config=config.to_dict(), inputs=inputs, extra=extra,
                            rng={"device": device.type, "sampler": sampler.state(), "torch": torch.get_rng_state()})

    losses: list[torch.Tensor] = []  # kept on the device until read

    def read_losses() -> None:  # one sync, now and then
        if losses:
            read = torch.stack(losses).tolist()
            losses.clear()
            check_diverged(read, history["train"]["step"][-len(read):], model, config, scaled=scaler.is_enabled())
            history["train"]["loss"].extend(read)

    reason = _already_stopped(history, stopper, config, time.perf_counter() - start)
    bar = progress_bar(range(done + 1, config.steps + 1), desc=f"train {config.task}/{config.weights}",
                       enabled=progress and reason is None, initial=done, total=config.steps)
    for step in bar if reason is None else ():
        batch = sampler.sample(config.batch_size)  # drawn on the device
        try:
            losses.append(training_step(net, batch, optimizer, scaler, amp, config.loss))
        except Exception as err:  # a compiled model may fail at its first step: warn, go on eagerly
            if net is model or step > done + 1:
                raise
            net = eager_fallback(model, err)
            losses.append(training_step(net, batch, optimizer, scaler, amp, config.loss))
        history["train"]["step"].append(step)
        spent = config.budget is not None and time.perf_counter() - start >= 60 * config.budget
        last = step == config.steps or spent
        if step % config.val_every == 0 or last:
            read_losses()
            if len(val[0]):
                scores = validate(model, val[0], val[1], config.task, device, normalizer=val[2])
                history["val"].append({"step": step, **scores, "lr": optimizer.param_groups[0]["lr"],
                                       "seconds": time.perf_counter() - start})
                bar.set_postfix({f"val_{key.replace('mean_', '')}": f"{scores[key]:.3f}"})
                if stopper.update(step, scores[key]) and config.keep_best:
                    best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                if scheduler is not None:
                    scheduler.step(scores[key])
        reason = "budget" if spent else "patience" if stopper.exhausted else "steps" if step == config.steps else None
        if reason is not None:
            history["stop"] = _stop_record(reason, step, stopper, config, best is not None, key)
        if checkpoint is not None and (step % every == 0 or reason is not None):
            read_losses()
            save_state(step)
        if reason is not None:
            break
    read_losses()
    if config.keep_best and best is not None:
        model.load_state_dict(best)
    model.task = config.task  # what it was trained for, checked where it is adapted (adapt.loop)
    history["seconds"] = time.perf_counter() - start
    return TrainResult(model=model.cpu().to(memory_format=torch.contiguous_format), config=config,
                       history=history)


def _held_out_volume(image, labels, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, Normalizer]:
    """A validation volume of its own (``val_image``, ``val_labels``), checked (labels in the
    codes ``0..4``, which validation reduces), with its own normaliser (as ``predict`` of that
    volume would use)."""
    if image is None or labels is None:
        missing = names[0] if image is None else names[1]
        raise InputError(f"{missing}: give both a validation image and its labels, or neither")
    image = check_image(image, names[0])
    labels = check_labels(labels, names[1])
    check_pair(image, labels, *names)
    return image, labels, Normalizer.from_volume(image)


def _check_stopping(config: TrainConfig, *, has_validation: bool) -> None:
    """Patience and ``keep_best`` read validation scores: refuse them without validation data."""
    if not has_validation and (config.patience is not None or config.keep_best):
        raise ValueError("patience and keep_best need validation data: val_slices > 0 on a volume of more than one "
                         "slice, or a val_image and val_labels")


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """The learning-rate schedule of ``config`` (None: constant), stepped with each validation score."""
    if config.lr_schedule == "constant":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                      patience=max(1, (config.patience or 4) // 2),
                                                      threshold=MIN_DELTA, threshold_mode="abs")


def _stop_record(reason: str, step: int, stopper: EarlyStopping, config: TrainConfig, kept_best: bool,
                 key: str) -> dict:
    """``history["stop"]``: why and where the run stopped, its best validation (``best_<key>``, the
    score of :func:`stopping_key`, named in ``score`` unless it is the mean Jaccard) and the weights kept."""
    return {"reason": reason, "step": step, **({} if key == "mean_jaccard" else {"score": key}),
            "best_step": stopper.best_step, f"best_{key}": stopper.best,
            "kept_step": stopper.best_step if config.keep_best and kept_best else step}


def _already_stopped(history: dict, stopper: EarlyStopping, config: TrainConfig, elapsed: float) -> str | None:
    """The reason a resumed run has nothing left to do (its patience or budget spent), else None."""
    if "stop" not in history:
        return None
    if stopper.exhausted:
        return "patience"
    if config.budget is not None and elapsed >= 60 * config.budget:
        return "budget"
    return None


def training_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, amp: Precision, loss: str = "ce") -> torch.Tensor:
    """One optimiser step on a batch already on the device; returns the loss, detached, on the device.

    The forward pass runs in ``amp``'s precision (channels-last images on CUDA); the loss is
    computed in float32 from the logits: weighted cross-entropy (``batch["weight"]``), soft
    Dice, their sum, or the weighted focal loss.
    """
    model.train()
    image = batch["image"]
    with amp.autocast():
        logits = model(image.contiguous(memory_format=memory_format(image.device)))
    logits = logits.float()
    value = logits.new_zeros(())
    terms = loss.split("+")
    if "ce" in terms:
        value = value + weighted_cross_entropy(logits, batch["target"], batch.get("weight"))
    if "dice" in terms:
        value = value + dice_loss(logits, batch["target"])
    if "focal" in terms:
        value = value + focal_loss(logits, batch["target"], batch.get("weight"))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(value).backward()
    scaler.step(optimizer)
    scaler.update()
    return value.detach()


def check_diverged(losses: list[float], steps: list[int], model: torch.nn.Module, config: TrainConfig, *,
                   scaled: bool = False) -> None:
    """Raise :class:`~emseg_tutorial.losses.Diverged` when training has stopped being finite.

    ``losses`` are the losses of ``steps``, just read from the device. A NaN or infinite loss,
    or a weight of ``model`` that is, ends the run with the step and the learning rate to lower.
    With a gradient scaler (``scaled``: float16 on CUDA), a step whose loss overflowed is
    skipped by the scaler itself; only non-finite weights, or every loss of the interval, count.

    Examples
    --------
    >>> cfg = TrainConfig(task="boundary", weights="none", steps=4, batch_size=1, patch=16, lr=10.0, val_every=2,
    ...                   model={"depth": 1, "base_width": 4})
    >>> check_diverged([0.7, float("nan")], [3, 4], torch.nn.Linear(1, 1), cfg)
    Traceback (most recent call last):
    ...
    emseg_tutorial.losses.Diverged: training diverged at step 4 (the loss is nan): lower lr (now 10)
    """
    settings = {"lr": config.lr}
    bad = first_non_finite({"loss": losses})
    if bad is not None and (not scaled or all(not math.isfinite(v) for v in losses)):
        raise Diverged("training", f"step {steps[bad[0]]}", f"the loss is {bad[2]}", settings)
    if non_finite_weights(model) is not None:
        raise Diverged("training", f"step {steps[-1]}", "the network's weights hold NaN or infinite values", settings)


#: Settings that may differ between a run and its resumption.
RESUMABLE_CHANGES = ("steps", "budget", "device")


def _resume(state: dict, config: TrainConfig, optimizer, scaler, sampler) -> tuple[int, dict]:
    """Load a training state into the optimiser, scaler and random streams; ``(step, history)``.

    Its settings and inputs were checked where the state entered :func:`train_supervised`.
    """
    if state["step"] > config.steps:
        raise ValueError(f"cannot resume: the saved run is at step {state['step']}, past steps={config.steps}")
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    sampler.set_state(state["rng"]["sampler"], state["rng"].get("device"))  # refused across device kinds
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"]), state["history"]


def _resume_stopping(state: dict, stopper: EarlyStopping, scheduler) -> tuple[EarlyStopping, dict | None]:
    """The stopping record, schedule and best weights of a saved state (a state saved before
    they existed has none: the run goes on from a fresh record)."""
    extra = state.get("extra") or {}
    if extra.get("stopper"):
        stopper = EarlyStopping.from_state(extra["stopper"])
    if scheduler is not None and extra.get("scheduler"):
        scheduler.load_state_dict(extra["scheduler"])
    return stopper, extra.get("best")
