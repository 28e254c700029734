"""One training step of each adaptation method, and the two adversarial updates they share.

Every method sees the same things: the U-Net being adapted (``ctx.model``), labelled source
patches and unlabelled target patches. They differ in what a discriminator compares and in
which losses move the U-Net:

==============  ===================================================  =========================
method          discriminator: real vs fake                          U-Net loss
==============  ===================================================  =========================
``paper``       source ground truth (one-hot) vs target softmax      adversarial only (no L1)
``conditional`` (source image, its truth) vs (source image, truth    source CE + adversarial
                of a distant slice) and (target image, prediction)
``adaptsegnet`` source softmax vs target softmax                     source CE + adversarial
``advent``      source vs target self-information maps               source CE + adversarial
                (``-p log p`` per class)                             (+ entropy, optional)
``selftrain``   none: a mean teacher gives confident pseudo-labels   source CE + pseudo-label CE
==============  ===================================================  =========================

"Source CE" is the supervised loss the paper drops (its L1): the weighted cross-entropy with
the same distance weights M2 and M3 were trained with. Published methods (AdaptSegNet, Tsai et
al. 2018; ADVENT, Vu et al. 2019) keep it and give the adversarial term a small weight.

The discriminator of ``conditional`` sees its image channel **rank-normalised per patch**
(:func:`~emseg_tutorial.data.histmatch.rank_normalize`) when ``config.condition_image`` is
``"rank"``: every patch of either domain then has the same flat histogram, so grey levels can
no longer betray the domain. With ``"raw"`` it sees the standardised image, and can learn the
shortcut "target image, so fake" without looking at the label map. Chapter 6 runs both.

Examples
--------
>>> sorted(STEPS)
['adaptsegnet', 'advent', 'conditional', 'paper', 'selftrain']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.histmatch import rank_normalize
from ..data.device_patches import DevicePatchSampler
from ..data.patches import PatchSampler
from ..data.augment import Jitter
from ..devices import Precision, memory_format, to_device
from ..losses import bce_fake, bce_real, entropy_map, weighted_cross_entropy


def one_hot(index: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B, H, W)`` class indices to ``(B, C, H, W)`` float one-hot maps (index -1: all zero)."""
    valid = index >= 0
    out = F.one_hot(index.clamp_min(0), n_classes).permute(0, 3, 1, 2).float()
    return out * valid[:, None].float()


def self_information(probs: torch.Tensor) -> torch.Tensor:
    """ADVENT's weighted self-information maps: ``-p_c log p_c / log C`` per class, ``(N, C, H, W)``.

    Their sum over classes is :func:`~emseg_tutorial.losses.entropy_map`.

    Examples
    --------
    >>> p = torch.tensor([[[[0.5]], [[0.5]]]])
    >>> self_information(p).flatten().tolist()
    [0.5, 0.5]
    """
    tiny = torch.finfo(probs.dtype).tiny
    return probs * -probs.clamp_min(tiny).log() / np.log(probs.shape[1])


def discriminator_step(disc: torch.nn.Module, optimizer: torch.optim.Optimizer, real: torch.Tensor,
                       fake: torch.Tensor | Sequence[torch.Tensor],
                       scaler: torch.amp.GradScaler | None = None) -> dict:
    """One update of ``disc``: ``real`` inputs should score real (L2), ``fake`` ones fake (L3).

    ``fake`` may be a list of several kinds of fakes (the conditional discriminator has two);
    their losses are averaged, so real and fake weigh the same. Fakes are detached here, so this
    step never changes the U-Net. Returns the loss and the fraction of patch logits the
    discriminator gets right: ``acc_real``, ``acc_fake`` (all fakes) and, for a list,
    ``acc_fake_1``, ``acc_fake_2``, ... per kind.
    """
    fakes = [fake] if isinstance(fake, torch.Tensor) else list(fake)
    logits_real = disc(real)
    logits_fake = [disc(f.detach()) for f in fakes]
    loss = 0.5 * (bce_real(logits_real) + sum(bce_fake(lf) for lf in logits_fake) / len(fakes))
    optimizer.zero_grad(set_to_none=True)
    backward_step(loss, optimizer, scaler)
    acc = [(lf.detach() < 0).float().mean() for lf in logits_fake]
    stats = {"loss_d": loss.detach(), "acc_real": (logits_real.detach() > 0).float().mean(),
             "acc_fake": torch.stack(acc).mean()}
    if len(fakes) > 1:
        stats.update({f"acc_fake_{i + 1}": a for i, a in enumerate(acc)})
    return stats


def generator_step(disc: torch.nn.Module, optimizer: torch.optim.Optimizer, fake: torch.Tensor,
                   adv_weight: float = 1.0, scaler: torch.amp.GradScaler | None = None,
                   extra_loss: torch.Tensor | None = None) -> dict:
    """One update of the U-Net behind ``fake`` so that ``disc`` calls it real.

    ``fake`` is computed from the U-Net's outputs on target patches (with its graph);
    ``extra_loss`` (e.g. the source cross-entropy) is added before the single backward pass.
    Only the U-Net's optimiser steps; the discriminator's gradients are never computed.
    """
    for p in disc.parameters():
        p.requires_grad_(False)
    adversarial = bce_real(disc(fake))
    loss = adv_weight * adversarial + (extra_loss if extra_loss is not None else 0.0)
    optimizer.zero_grad(set_to_none=True)
    backward_step(loss, optimizer, scaler)
    for p in disc.parameters():
        p.requires_grad_(True)
    return {"loss_g": adversarial.detach(), "loss_total": loss.detach()}


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler) -> None:
    """``loss.backward(); optimizer.step()``, through the AMP scaler when there is one."""
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


@dataclass
class StepContext:
    """Everything one step reads or updates (built once by :func:`~.adversarial.adapt`)."""

    model: torch.nn.Module
    disc: torch.nn.Module | None
    teacher: torch.nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    scaler_g: torch.amp.GradScaler | None
    scaler_d: torch.amp.GradScaler | None
    source: PatchSampler | DevicePatchSampler
    target: PatchSampler | DevicePatchSampler
    config: "AdaptConfig"  # noqa: F821
    device: torch.device
    amp: Precision
    n_classes: int
    jitter: Jitter
    rng: np.random.Generator | torch.Generator  # of the self-training jitter: torch with device samplers

    def batch(self, sampler: PatchSampler | DevicePatchSampler) -> dict[str, torch.Tensor]:
        """A batch on the device (device samplers' batches are there already)."""
        return to_device(sampler.sample(self.config.batch_size), self.device)

    def probs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, softmax)`` of the U-Net in training mode, float32."""
        self.model.train()
        with self.amp.autocast():
            logits = self.model(image.contiguous(memory_format=memory_format(image.device))).float()
        return logits, torch.softmax(logits, dim=1)

    def source_loss(self) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
        """Weighted source cross-entropy (0 when ``source_weight`` is 0), the source batch and logits."""
        src = self.batch(self.source)
        if self.config.source_weight == 0:
            return torch.zeros((), device=self.device), src, None
        logits, _ = self.probs(src["image"])
        return self.config.source_weight * weighted_cross_entropy(logits, src["target"], src["weight"]), src, logits

    def condition(self, image: torch.Tensor, label_map: torch.Tensor) -> torch.Tensor:
        """The conditional discriminator's input: image channel + label-map channels."""
        if self.config.condition_image == "rank":
            image = rank_normalize(image)
        return torch.cat([image, label_map], dim=1)


def paper_step(ctx: StepContext) -> dict:
    """The paper's Experiment 3: truth maps real, target predictions fake, no source loss."""
    _, probs = ctx.probs(ctx.batch(ctx.target)["image"])
    for _ in range(ctx.config.d_steps):
        real = one_hot(ctx.batch(ctx.source)["target"], ctx.n_classes)
        d_stats = discriminator_step(ctx.disc, ctx.opt_d, real, probs, ctx.scaler_d)
    extra = None
    if ctx.config.source_weight > 0:
        extra, _, _ = ctx.source_loss()
    return {**d_stats, **generator_step(ctx.disc, ctx.opt_g, probs, ctx.config.adv_weight, ctx.scaler_g, extra)}


def conditional_step(ctx: StepContext) -> dict:
    """The paper's future work: a discriminator on (image, label map) pairs."""
    loss_src, _, _ = ctx.source_loss()
    tgt = ctx.batch(ctx.target)["image"]
    _, probs = ctx.probs(tgt)
    for _ in range(ctx.config.d_steps):
        src = ctx.batch(ctx.source)
        real = ctx.condition(src["image"], one_hot(src["target"], ctx.n_classes))
        wrong = ctx.condition(src["image"], one_hot(src["mismatched"], ctx.n_classes))
        d_stats = discriminator_step(ctx.disc, ctx.opt_d, real, [wrong, ctx.condition(tgt, probs.detach())],
                                     ctx.scaler_d)
    g_stats = generator_step(ctx.disc, ctx.opt_g, ctx.condition(tgt, probs), ctx.config.adv_weight, ctx.scaler_g,
                             loss_src)
    d_stats["acc_fake_mismatch"] = d_stats.pop("acc_fake_1")
    d_stats["acc_fake_target"] = d_stats.pop("acc_fake_2")
    return {**d_stats, **g_stats, "loss_source": loss_src.detach()}


def _output_space_step(ctx: StepContext, to_d: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """AdaptSegNet / ADVENT: source outputs real, target outputs fake, source CE kept."""
    loss_src, src, src_logits = ctx.source_loss()
    if src_logits is None:  # source_weight 0: still need the source outputs for the discriminator
        src_logits, _ = ctx.probs(src["image"])
    _, probs = ctx.probs(ctx.batch(ctx.target)["image"])
    real = to_d(torch.softmax(src_logits.detach(), dim=1))
    d_stats = {}
    for _ in range(ctx.config.d_steps):
        d_stats = discriminator_step(ctx.disc, ctx.opt_d, real, to_d(probs), ctx.scaler_d)
    extra = loss_src
    if ctx.config.entropy_weight > 0:
        extra = extra + ctx.config.entropy_weight * entropy_map(probs).mean()
    g_stats = generator_step(ctx.disc, ctx.opt_g, to_d(probs), ctx.config.adv_weight, ctx.scaler_g, extra)
    return {**d_stats, **g_stats, "loss_source": loss_src.detach()}


def adaptsegnet_step(ctx: StepContext) -> dict:
    """AdaptSegNet (output-space adaptation): the discriminator compares softmax maps."""
    return _output_space_step(ctx, lambda p: p)


def advent_step(ctx: StepContext) -> dict:
    """ADVENT: the discriminator compares self-information (entropy) maps."""
    return _output_space_step(ctx, self_information)


def jittered(ctx: StepContext, image: torch.Tensor) -> torch.Tensor:
    """The same standardised target patches with the paper's random intensity jitter: on the
    device with a torch stream (device samplers), else with numpy on the host."""
    norm = ctx.target.normalizer
    if isinstance(ctx.rng, torch.Generator):
        return norm.standardize(ctx.jitter.apply_torch(norm.to_unit(image[:, 0]), ctx.rng))[:, None]
    unit = norm.to_unit(image[:, 0].cpu().numpy())
    out = norm.standardize(ctx.jitter(unit, ctx.rng))[:, None]
    return torch.from_numpy(out).to(image.device)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """Mean teacher: ``teacher = decay * teacher + (1 - decay) * student``; buffers copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def selftrain_step(ctx: StepContext) -> dict:
    """Self-training with a mean teacher: confident teacher predictions on clean target patches
    supervise the student on jittered copies of the same patches, beside the source loss."""
    loss_src, _, _ = ctx.source_loss()
    tgt = ctx.batch(ctx.target)["image"]
    with torch.no_grad():
        ctx.teacher.train()  # normalise with the target batch's own statistics
        with ctx.amp.autocast():
            teacher_probs = torch.softmax(ctx.teacher(tgt).float(), dim=1)
    confidence, pseudo = teacher_probs.max(dim=1)
    pseudo = torch.where(confidence >= ctx.config.pseudo_threshold, pseudo, torch.full_like(pseudo, -1))
    logits, _ = ctx.probs(jittered(ctx, tgt))
    loss_pseudo = weighted_cross_entropy(logits, pseudo)
    loss = loss_src + ctx.config.pseudo_weight * loss_pseudo
    ctx.opt_g.zero_grad(set_to_none=True)
    backward_step(loss, ctx.opt_g, ctx.scaler_g)
    ema_update(ctx.teacher, ctx.model, ctx.config.ema_decay)
    kept = pseudo >= 0
    return {"loss_source": loss_src.detach(), "loss_pseudo": loss_pseudo.detach(),
            "pseudo_fraction": kept.float().mean(),
            "pseudo_boundary_fraction": ((pseudo == 0) & kept).sum() / kept.sum().clamp_min(1)}


#: method name -> its step
STEPS: dict[str, Callable[[StepContext], dict]] = {
    "paper": paper_step,
    "conditional": conditional_step,
    "adaptsegnet": adaptsegnet_step,
    "advent": advent_step,
    "selftrain": selftrain_step,
}
