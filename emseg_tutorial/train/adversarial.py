"""Unsupervised adaptation of the boundary U-Net to the target (Experiment 3).

The paper's method (``method="paper"``), step by step, as its Section 4.3 and Fig. 4 describe:

* a discriminator ``D`` sees **source ground-truth label maps** (one-hot) as *real* (loss L2)
  and the U-Net's **softmax predictions on target patches** as *fake* (loss L3);
* the U-Net ``G`` (initialised from M3) is then updated **only** to make ``D`` call its target
  predictions real; the supervised source loss L1 is dropped;
* the two updates alternate, ``d_steps`` discriminator steps per generator step.

Choices the paper leaves open, and ours: binary cross-entropy on logits for both players (the
original GAN loss, as in AdaptSegNet); Adam with ``lr_d = 1e-4`` (the paper's only stated rate)
and a ten times smaller ``lr_g = 1e-5`` for the pre-trained U-Net; adversarial weight 1 (there is
no other loss to balance); one discriminator step per generator step; a PatchGAN discriminator
without normalisation (:class:`~emseg_tutorial.models.PatchDiscriminator`); the U-Net in
training mode on target batches, so its batch-norm statistics drift to the target as PyTorch
does by default (chapter 6 separates this effect with AdaBN).

After every epoch the trainer records label-free diagnostics (discriminator accuracy on real and
fake, predicted boundary fraction on the target against the source's, mean prediction entropy
on the target, source validation Jaccard) and, when a labelled target volume is given for
evaluation, its scores. Those labels only score the model; no update reads them.

Examples
--------
>>> import numpy as np
>>> from emseg_tutorial.models import UNet2d
>>> from emseg_tutorial.data.synthetic import make_volume
>>> src, tgt = make_volume("fibsem", (3, 48, 48)), make_volume("snemi", (3, 48, 48))
>>> cfg = AdaptConfig(epochs=1, steps_per_epoch=2, batch_size=2, patch=32,
...                   discriminator={"width": 4, "depth": 2})
>>> res = adapt(UNet2d(out_channels=2, depth=2, base_width=4), src.labels, tgt.image, cfg, progress=False)
>>> [e["epoch"] for e in res.history["epochs"]]
[0, 1]
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..data.io import check_image, check_labels
from ..data.patches import PatchSampler
from ..data.volume import Volume
from ..devices import pick_device, set_seed, use_amp
from ..labels import BOUNDARY, for_task, num_classes
from ..losses import bce_fake, bce_real
from ..metrics import boundary_scores, evaluate
from ..models import PatchDiscriminator
from ..predict import predict_probabilities, probabilities_to_codes
from ..progress import progress as progress_bar

METHODS = ("paper",)


@dataclass
class AdaptConfig:
    """Settings of one adaptation run (stored with the adapted model).

    Attributes
    ----------
    method : str
        ``"paper"``: the discriminator on label maps alone, no source loss.
    epochs, steps_per_epoch : int
        The paper shows the target after each of 4 epochs.
    batch_size, patch : int
        Target patches (and source label patches) per step and their side.
    lr_g, lr_d : float
        Adam learning rates of the U-Net and the discriminator.
    adv_weight : float
        Weight of the adversarial loss in the U-Net's update.
    d_steps : int
        Discriminator updates per U-Net update.
    seed : int
    discriminator : dict
        :class:`~emseg_tutorial.models.PatchDiscriminator` keyword arguments (``in_channels``
        is set from the task).
    device : str, optional
    """

    method: str = "paper"
    epochs: int = 4
    steps_per_epoch: int = 50
    batch_size: int = 8
    patch: int = 128
    lr_g: float = 1e-5
    lr_d: float = 1e-4
    adv_weight: float = 1.0
    d_steps: int = 1
    seed: int = 0
    discriminator: dict = field(default_factory=lambda: {"width": 32, "depth": 4, "norm": None})
    device: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("epochs", "steps_per_epoch", "batch_size", "d_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.adv_weight <= 0:
            raise ValueError(f"adv_weight must be > 0, got {self.adv_weight}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdaptResult:
    """The adapted U-Net, its discriminator, the history and per-epoch target snapshots."""

    model: torch.nn.Module
    discriminator: torch.nn.Module
    config: AdaptConfig
    history: dict
    snapshots: list[np.ndarray]


def one_hot(index: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B, H, W)`` class indices to ``(B, C, H, W)`` float one-hot maps (index -1: all zero)."""
    valid = index >= 0
    out = F.one_hot(index.clamp_min(0), n_classes).permute(0, 3, 1, 2).float()
    return out * valid[:, None].float()


def discriminator_step(disc: torch.nn.Module, optimizer: torch.optim.Optimizer, real: torch.Tensor,
                       fake: torch.Tensor, scaler: torch.amp.GradScaler | None = None) -> dict:
    """One update of ``disc``: ``real`` label maps should score real (L2), ``fake`` ones fake (L3).

    ``fake`` is detached here, so this step never changes the U-Net. Returns the loss and the
    fraction of real and fake pixels-patches the discriminator gets right.
    """
    logits_real, logits_fake = disc(real), disc(fake.detach())
    loss = 0.5 * (bce_real(logits_real) + bce_fake(logits_fake))
    optimizer.zero_grad(set_to_none=True)
    _backward_step(loss, optimizer, scaler)
    return {"loss_d": float(loss.detach()), "acc_real": float((logits_real > 0).float().mean()),
            "acc_fake": float((logits_fake < 0).float().mean())}


def generator_step(disc: torch.nn.Module, optimizer: torch.optim.Optimizer, probs: torch.Tensor,
                   adv_weight: float = 1.0, scaler: torch.amp.GradScaler | None = None) -> dict:
    """One update of the U-Net behind ``probs`` so that ``disc`` calls them real.

    ``probs`` are the U-Net's softmax outputs on target patches (with their graph). Only the
    U-Net's optimiser steps; the discriminator's gradients from this loss are discarded.
    """
    for p in disc.parameters():
        p.requires_grad_(False)
    loss = adv_weight * bce_real(disc(probs))
    optimizer.zero_grad(set_to_none=True)
    _backward_step(loss, optimizer, scaler)
    for p in disc.parameters():
        p.requires_grad_(True)
    return {"loss_g": float(loss.detach())}


def _backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler) -> None:
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def epoch_report(model: torch.nn.Module, target_image: np.ndarray, source_prior: float, device: torch.device,
                 source_val: Volume | None = None, target_eval: Volume | None = None) -> dict:
    """Label-free diagnostics on the target (and source validation / target scores when given)."""
    probs = predict_probabilities(model, target_image, device=device)
    p = np.clip(probs, 1e-7, 1.0)
    entropy = float((-(p * np.log(p)).sum(0) / np.log(probs.shape[0])).mean())
    codes = probabilities_to_codes(probs)
    report = {"target_boundary_fraction": float((codes == BOUNDARY).mean()), "source_boundary_fraction": source_prior,
              "target_entropy": entropy, "source_val_boundary_jaccard": None, "target": None,
              "d_acc_real": None, "d_acc_fake": None}
    if source_val is not None:
        src = probabilities_to_codes(predict_probabilities(model, source_val.image, device=device))
        report["source_val_boundary_jaccard"] = boundary_scores(src, for_task(source_val.labels, "boundary"))[
            "boundary_jaccard"]
    if target_eval is not None:
        pred = probabilities_to_codes(predict_probabilities(model, target_eval.image, device=device))
        report["target"] = evaluate(pred, for_task(target_eval.labels, "boundary"), "boundary")
    return report


def adapt(model: torch.nn.Module, source_labels: np.ndarray, target_image: np.ndarray, config: AdaptConfig, *,
          source_image: np.ndarray | None = None, source_val: Volume | None = None,
          target_eval: Volume | None = None, snapshot_slice: int | None = None,
          progress: bool = True) -> AdaptResult:
    """Adapt a boundary U-Net (M3) to an unlabelled target volume.

    Parameters
    ----------
    model : torch.nn.Module
        The source-trained boundary model; a copy is adapted.
    source_labels : ndarray, (Z, Y, X)
        Source ground truth (4-class or boundary codes): the discriminator's "real" maps.
    target_image : ndarray, (Z, Y, X)
        Unlabelled target volume the U-Net adapts to.
    config : AdaptConfig
    source_image : ndarray, optional
        Source images (needed by conditional methods; unused by ``paper``).
    source_val : Volume, optional
        Labelled source volume for the source-drift diagnostic.
    target_eval : Volume, optional
        Labelled target volume, used **only** to score each epoch.
    snapshot_slice : int, optional
        Slice of ``target_eval`` (else of ``target_image``) predicted after each epoch (Fig. 6).
    progress : bool
    """
    target_image = check_image(target_image, "target image")
    labels = for_task(check_labels(source_labels, "source labels"), "boundary")
    n_classes = num_classes("boundary")
    set_seed(config.seed)
    device = pick_device(config.device)

    # The paper's discriminator needs source label maps only; the image is a placeholder then.
    source_sampler = PatchSampler(np.zeros_like(labels) if source_image is None else source_image, labels,
                                  patch=config.patch, seed=config.seed)
    target_sampler = PatchSampler(target_image, None, patch=config.patch, seed=config.seed + 1)
    source_prior = float((labels == BOUNDARY).sum() / max((labels > 0).sum(), 1))

    model = copy.deepcopy(model).to(device)
    disc = PatchDiscriminator(in_channels=n_classes, **config.discriminator).to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=config.lr_g, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr_d, betas=(0.9, 0.99))
    amp = use_amp(device)
    scaler_g = torch.amp.GradScaler(device.type) if amp else None
    scaler_d = torch.amp.GradScaler(device.type) if amp else None

    snap_volume = target_eval.image if target_eval is not None else target_image
    z_snap = snap_volume.shape[0] // 2 if snapshot_slice is None else snapshot_slice
    snapshots = [_snapshot(model, snap_volume, z_snap, device)]
    history: dict = {"config": config.to_dict(), "snapshot_slice": z_snap,
                     "train": {"step": [], "loss_d": [], "loss_g": [], "acc_real": [], "acc_fake": []},
                     "epochs": [{"epoch": 0, **epoch_report(model, target_image, source_prior, device,
                                                             source_val, target_eval)}]}
    start = time.perf_counter()
    step = 0
    for epoch in range(1, config.epochs + 1):
        bar = progress_bar(range(config.steps_per_epoch), enabled=progress,
                           desc=f"adapt ({config.method}) epoch {epoch}/{config.epochs}")
        for _ in bar:
            step += 1
            model.train()
            target = torch.from_numpy(target_sampler.sample(config.batch_size)["image"]).to(device)
            with torch.autocast(device_type=device.type, enabled=amp):
                probs = torch.softmax(model(target).float(), dim=1)
            for _ in range(config.d_steps):
                real_index = torch.from_numpy(source_sampler.sample(config.batch_size)["target"]).to(device)
                d_stats = discriminator_step(disc, opt_d, one_hot(real_index, n_classes), probs, scaler_d)
            g_stats = generator_step(disc, opt_g, probs, config.adv_weight, scaler_g)
            for key, value in {"step": step, **d_stats, **g_stats}.items():
                history["train"][key].append(value)
            bar.set_postfix(d_real=f"{d_stats['acc_real']:.2f}", d_fake=f"{d_stats['acc_fake']:.2f}")
        report = epoch_report(model, target_image, source_prior, device, source_val, target_eval)
        recent = slice(-config.steps_per_epoch, None)
        report["d_acc_real"] = float(np.mean(history["train"]["acc_real"][recent]))
        report["d_acc_fake"] = float(np.mean(history["train"]["acc_fake"][recent]))
        history["epochs"].append({"epoch": epoch, **report})
        snapshots.append(_snapshot(model, snap_volume, z_snap, device))
    history["seconds"] = time.perf_counter() - start
    return AdaptResult(model=model.cpu(), discriminator=disc.cpu(), config=config, history=history,
                       snapshots=snapshots)


def _snapshot(model: torch.nn.Module, volume: np.ndarray, z: int, device: torch.device) -> np.ndarray:
    """Boundary probability of one slice (the paper's Fig. 6 pictures)."""
    probs = predict_probabilities(model, volume[z:z + 1], device=device)
    return probs[BOUNDARY - 1, 0]
