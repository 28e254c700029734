"""Supervised training of the 2D U-Net: Experiments 1 and 2 and the jitter step.

One function, :func:`train_supervised`, reads from top to bottom:

1. labels are reduced to the task (4 classes, or boundary against the rest);
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

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .._validate import check_image, check_pair
from ..data.augment import get_jitter
from ..data.normalize import Normalizer
from ..data.patches import PatchSampler
from ..devices import (Precision, adam, check_precision, compile_model, eager_fallback, memory_format, pick_device,
                       precision, set_seed)
from ..labels import TASKS, check_labels, for_task, num_classes
from ..losses import dice_loss, focal_loss, weighted_cross_entropy
from ..metrics import pixel_scores
from ..models import build, build_model, check_model
from ..predict import predict_labels
from ..progress import progress as progress_bar
from ..weight_schemes import parse_weight_scheme, weight_map_of_codes
from ..store import check_inputs, check_resumable, input_fingerprints, restore_model, save_training_state

LOSSES = ("ce", "dice", "ce+dice", "focal")


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
    task : {"multiclass", "boundary"}
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
    seed : int
        Seed of weights initialisation and patch sampling.
    device : str, optional
        ``cpu``, ``cuda``, ``mps``; default: the best available.
    precision : {"auto", "float32", "bfloat16", "float16"}
        Autocast dtype (:func:`~emseg_tutorial.devices.precision`): ``auto`` is bfloat16 on
        recent GPUs and on CPUs with native bfloat16, float16 on older GPUs, else float32.
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
    seed: int = 0
    model: dict
    device: str | None = None
    precision: str = "auto"

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
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        get_jitter(self.jitter)  # a known jitter or none
        if not 0 <= self.val_slices < 1:
            raise ValueError(f"val_slices must be in [0, 1), got {self.val_slices}")

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
    (of :func:`~emseg_tutorial.metrics.pixel_scores`).

    ``image`` is the held-out slices of a volume and ``normalizer`` that whole volume's (the one
    the training patches were standardised with), so the scores are those of ``predict`` of the
    whole volume, evaluated on these slices.
    """
    s = pixel_scores(predict_labels(model, image, normalizer=normalizer, device=device), labels, task)
    return {k: s[k] for k in ("mean_jaccard", "jaccard", "boundary_jaccard", "boundary_f1")}


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
                     resume: dict | None = None, compile: bool = False) -> TrainResult:
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
        (``steps`` and ``device`` aside) and the same ``image``, ``labels`` and (when given) ``init``
        (their fingerprints, :mod:`emseg_tutorial.store.fingerprints`, are saved with the state):
        training continues from its step. Other data is refused before any work
        (:class:`~emseg_tutorial.store.fingerprints.InputChanged`, a ValueError naming the argument).
    compile : bool
        Train through ``torch.compile`` (``EMSEG_COMPILE=1`` in a session); if compiling fails,
        at once or at the first step, a warning says so and training goes on eagerly.

    Returns
    -------
    TrainResult
    """
    image = check_image(image, "image")
    labels = check_labels(labels, "labels")
    check_pair(image, labels)
    # what the saved state records of its inputs, checked on resumption before any work
    inputs = (input_fingerprints({"image": image, "labels": labels, "init": init})
              if checkpoint is not None or resume is not None else None)
    if resume is not None:
        check_resumable(resume["config"], config.to_dict(), RESUMABLE_CHANGES, f"step {resume['step']}")
        inputs = check_inputs(resume, inputs, optional=("init",))
    labels = for_task(labels, config.task)
    set_seed(config.seed)
    device = pick_device(config.device)

    weights = weight_map_of_codes(labels, config.weights)  # labels checked above, once
    normalizer = Normalizer.from_volume(image)  # the volume's one: training patches and validation
    train_z, val_z = split_slices(image.shape[0], config.val_slices)
    sampler = PatchSampler(image, labels, weights, device=device, patch=config.patch, slices=train_z,
                           jitter=get_jitter(config.jitter), seed=config.seed, normalizer=normalizer)

    model = restore_model(resume) if resume is not None else _initial_model(config, init)
    model = model.to(device, memory_format=memory_format(device))
    net = compile_model(model) if compile else model  # what steps; ``model`` holds the weights
    optimizer = adam(model.parameters(), config.lr, device)
    amp = precision(device, config.precision)
    scaler = amp.grad_scaler()
    history: dict = {"train": {"step": [], "loss": []}, "val": [], "val_slices": val_z.tolist()}
    done = 0
    if resume is not None:
        done, history = _resume(resume, config, optimizer, scaler, sampler)
    start = time.perf_counter() - history.get("seconds", 0.0)
    every = checkpoint_every or config.val_every

    def save_state(step: int) -> None:
        history["seconds"] = time.perf_counter() - start
        save_training_state(checkpoint, model=model, optimizer=optimizer, scaler=scaler, step=step,
                            history=history, config=config.to_dict(), inputs=inputs,
                            rng={"device": device.type, "sampler": sampler.state(), "torch": torch.get_rng_state()})

    losses: list[torch.Tensor] = []  # kept on the device until read
    bar = progress_bar(range(done + 1, config.steps + 1), desc=f"train {config.task}/{config.weights}",
                       enabled=progress, initial=done, total=config.steps)
    for step in bar:
        batch = sampler.sample(config.batch_size)  # drawn on the device
        try:
            losses.append(training_step(net, batch, optimizer, scaler, amp, config.loss))
        except Exception as err:  # a compiled model may fail at its first step: warn, go on eagerly
            if net is model or step > done + 1:
                raise
            net = eager_fallback(model, err)
            losses.append(training_step(net, batch, optimizer, scaler, amp, config.loss))
        history["train"]["step"].append(step)
        if step % config.val_every == 0 or step == config.steps:  # read the losses (one sync) now and then
            history["train"]["loss"].extend(torch.stack(losses).tolist())
            losses.clear()

        if len(val_z) and (step % config.val_every == 0 or step == config.steps):
            scores = validate(model, image[val_z], labels[val_z], config.task, device, normalizer=normalizer)
            history["val"].append({"step": step, **scores})
            bar.set_postfix(val_jaccard=f"{scores['mean_jaccard']:.3f}")
        if checkpoint is not None and (step % every == 0 or step == config.steps):
            save_state(step)
    history["seconds"] = time.perf_counter() - start
    return TrainResult(model=model.cpu().to(memory_format=torch.contiguous_format), config=config,
                       history=history)


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


#: Settings that may differ between a run and its resumption.
RESUMABLE_CHANGES = ("steps", "device")


def _resume(state: dict, config: TrainConfig, optimizer, scaler, sampler) -> tuple[int, dict]:
    """Load a training state into the optimiser, scaler and random streams; ``(step, history)``."""
    check_resumable(state["config"], config.to_dict(), RESUMABLE_CHANGES, f"step {state['step']}")
    if state["step"] > config.steps:
        raise ValueError(f"cannot resume: the saved run is at step {state['step']}, past steps={config.steps}")
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    sampler.set_state(state["rng"]["sampler"], state["rng"].get("device"))  # refused across device kinds
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"]), state["history"]
