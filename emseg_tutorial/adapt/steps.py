"""One training step of each adaptation method, and the two adversarial updates they share.

Every method sees the same things: the U-Net being adapted (``ctx.model``), labelled source
patches and unlabelled target patches. They differ in what a discriminator compares and in
which losses move the U-Net:

======================  ===================================================  =========================
method                  discriminator: real vs fake                          U-Net loss
======================  ===================================================  =========================
``paper``               source ground truth (one-hot) vs target softmax      adversarial only (no L1)
``conditional-paper``   (source image, its truth) vs (source image, truth    adversarial only (no L1)
                        of a distant slice) and (target image, prediction);
                        raw image channel: the paper's future work as written
``conditional``         the same pairs, image channel rank-normalised        source CE + adversarial
``adaptsegnet``         source softmax vs target softmax                     source CE + adversarial
``advent``              source vs target self-information maps               source CE + adversarial
                        (``-p log p`` per class)                             (+ entropy, optional)
``selftrain``           none: a mean teacher gives confident pseudo-labels   source CE + pseudo-label CE
======================  ===================================================  =========================

"Source CE" is the supervised loss the paper drops (its L1): the weighted cross-entropy with
the same distance weights M2 and M3 were trained with. Published methods (AdaptSegNet, Tsai et
al. 2018; ADVENT, Vu et al. 2019) keep it and give the adversarial term a small weight.
``conditional`` is the paper's future-work discriminator *plus* those two additions (source CE
and rank normalisation); ``conditional-paper`` is the recipe the paper proposes, U-Net trained
only adversarially on raw images.

The U-Net's adversarial loss is the non-saturating binary cross-entropy ``-log D(fake)`` of
:func:`generator_step` (Goodfellow et al. 2014), not a literal "maximise L3" (``log(1 - D)``,
whose gradient vanishes while the discriminator wins).

**The hard-vs-soft cue.** Where the real side is one-hot truth (``paper``, both conditional
methods) and the fake side a softmax, the discriminator can tell them apart by softness alone.
:func:`shortcut_probe` measures it after every epoch, without training the discriminator: the
share of *argmax-hardened* target predictions (pairs, for the conditional discriminator) it
still calls fake (``d_acc_target_hard``) beside the share of the same soft predictions
(``d_acc_target_soft``). A discriminator that catches soft maps but lets their hardened copies
pass is judging softness, not structure. Two settings remove the cue:

* ``config.real_smoothing = eps``: real (and wrong-slice) maps become label-smoothed,
  ``one_hot * (1 - eps) + eps / C`` (chapter 6's ``paper-soft-real`` uses a fixed 0.1, not
  tuned on the target; a constant smoothing is a weaker cue than one-hot, not none);
* ``config.hard_fake = True``: the discriminator sees straight-through hard predictions,
  ``one_hot(argmax p) + p - p.detach()`` (exactly one-hot forward, the softmax's gradient
  backward; chapter 6's ``paper-hard-fake``).

The discriminator of ``conditional`` sees its image channel **rank-normalised per patch**
(:func:`~emseg_tutorial.data.histmatch.rank_normalize`) when ``config.condition_image`` is
``"rank"``: every patch of either domain then has the same flat histogram, so grey levels can
no longer betray the domain. With ``"raw"`` it sees the standardised image, and can learn the
shortcut "target image, so fake" without looking at the label map. Chapter 6 runs both.

The methods' records (which step, which discriminator input, which defaults) are in
:mod:`.registry`.

Examples
--------
>>> sorted(DISCRIMINATOR_INPUTS)
['maps', 'pairs', 'self-info']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.histmatch import rank_normalize
from ..data.patches import PatchSampler
from ..data.augment import Jitter
from ..devices import Precision, memory_format
from ..losses import bce_fake, bce_real, entropy_map, weighted_cross_entropy


def one_hot(index: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B, H, W)`` class indices to ``(B, C, H, W)`` float one-hot maps (index -1: all zero)."""
    valid = index >= 0
    out = F.one_hot(index.clamp_min(0), n_classes).permute(0, 3, 1, 2).float()
    return out * valid[:, None].float()


def harden(probs: torch.Tensor) -> torch.Tensor:
    """One-hot maps of the argmax of ``(B, C, H, W)`` probabilities.

    Examples
    --------
    >>> harden(torch.tensor([[[[0.3]], [[0.7]]]])).flatten().tolist()
    [0.0, 1.0]
    """
    return one_hot(probs.argmax(1), probs.shape[1])


class _StraightThrough(torch.autograd.Function):
    """``one_hot(argmax p) + p - p.detach()`` with an exactly one-hot forward value (the sum
    rounds to 0.99999994 in float32, a softness cue of its own): hard maps forward, the identity
    backward."""

    @staticmethod
    def forward(ctx, probs):
        return harden(probs)

    @staticmethod
    def backward(ctx, grad):
        return grad


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
    """Everything one step reads or updates (built once by :func:`~.loop.step_context` for :func:`~.loop.adapt`)."""

    model: torch.nn.Module
    disc: torch.nn.Module | None
    teacher: torch.nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    scaler_g: torch.amp.GradScaler | None
    scaler_d: torch.amp.GradScaler | None
    source: PatchSampler
    target: PatchSampler
    config: "AdaptConfig"  # noqa: F821
    device: torch.device
    amp: Precision
    n_classes: int
    jitter: Jitter
    rng: torch.Generator  # of the self-training jitter, on the device
    disc_input: str = "none"  # what the discriminator sees (a key of DISCRIMINATOR_INPUTS)

    def batch(self, sampler: PatchSampler) -> dict[str, torch.Tensor]:
        """A batch of ``config.batch_size`` patches, drawn on the device."""
        return sampler.sample(self.config.batch_size)

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

    def real_maps(self, index: torch.Tensor) -> torch.Tensor:
        """Truth maps as the discriminator's real side: one-hot, label-smoothed by
        ``config.real_smoothing`` (pixels without a label stay all zero)."""
        maps = one_hot(index, self.n_classes)
        eps = self.config.real_smoothing
        if eps > 0:
            maps = (maps * (1 - eps) + eps / self.n_classes) * (index >= 0)[:, None].float()
        return maps

    def fake_maps(self, probs: torch.Tensor) -> torch.Tensor:
        """Target predictions as the discriminator sees them: the softmax, or straight-through
        hard maps with ``config.hard_fake`` (one-hot forward, the softmax's gradient backward)."""
        return _StraightThrough.apply(probs) if self.config.hard_fake else probs

    def condition(self, image: torch.Tensor, label_map: torch.Tensor) -> torch.Tensor:
        """The conditional discriminator's input: image channel + label-map channels."""
        if self.config.condition_image == "rank":
            image = rank_normalize(image)
        return torch.cat([image, label_map], dim=1)


def paper_step(ctx: StepContext) -> dict:
    """The paper's Experiment 3: truth maps real, target predictions fake, no source loss."""
    _, probs = ctx.probs(ctx.batch(ctx.target)["image"])
    for _ in range(ctx.config.d_steps):
        real = ctx.real_maps(ctx.batch(ctx.source)["target"])
        d_stats = discriminator_step(ctx.disc, ctx.opt_d, real, ctx.fake_maps(probs), ctx.scaler_d)
    extra = None
    if ctx.config.source_weight > 0:
        extra, _, _ = ctx.source_loss()
    fake = ctx.fake_maps(probs)
    return {**d_stats, **generator_step(ctx.disc, ctx.opt_g, fake, ctx.config.adv_weight, ctx.scaler_g, extra)}


def conditional_step(ctx: StepContext) -> dict:
    """A discriminator on (image, label map) pairs: the paper's future work.

    ``conditional-paper`` runs it as the paper proposes (``source_weight`` 0, ``adv_weight`` 1,
    raw image channel); ``conditional`` adds the source loss and rank normalisation
    (their records' defaults, :mod:`.registry`)."""
    loss_src, _, _ = ctx.source_loss()
    tgt = ctx.batch(ctx.target)["image"]
    _, probs = ctx.probs(tgt)
    for _ in range(ctx.config.d_steps):
        src = ctx.batch(ctx.source)
        real = ctx.condition(src["image"], ctx.real_maps(src["target"]))
        wrong = ctx.condition(src["image"], ctx.real_maps(src["mismatched"]))
        fake = ctx.condition(tgt, ctx.fake_maps(probs).detach())
        d_stats = discriminator_step(ctx.disc, ctx.opt_d, real, [wrong, fake], ctx.scaler_d)
    g_stats = generator_step(ctx.disc, ctx.opt_g, ctx.condition(tgt, ctx.fake_maps(probs)), ctx.config.adv_weight,
                             ctx.scaler_g, loss_src)
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
    """The same standardised target patches with the paper's random intensity jitter, drawn
    on the device with the run's jitter stream (``ctx.rng``)."""
    norm = ctx.target.normalizer
    return norm.standardize(ctx.jitter(norm.to_unit(image[:, 0]), ctx.rng))[:, None]


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


#: what a discriminator sees, by kind (:attr:`~.registry.Method.discriminator`): ``(input channels
#: beside the label maps, (ctx, image, label maps) -> its input)``
DISCRIMINATOR_INPUTS: dict[str, tuple[int, Callable[[StepContext, torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "maps": (0, lambda ctx, image, maps: maps),
    "pairs": (1, lambda ctx, image, maps: ctx.condition(image, maps)),
    "self-info": (0, lambda ctx, image, maps: self_information(maps)),
}

#: target batches :func:`shortcut_probe` scores
PROBE_BATCHES = 2


@torch.no_grad()
def shortcut_probe(ctx: StepContext, batches: int = PROBE_BATCHES) -> dict[str, torch.Tensor]:
    """The hard-vs-soft test of the module docstring, on ``batches`` target batches.

    Returns (as 0-d tensors, read by the loop once per epoch) the share of the discriminator's
    patch logits that call fake the target predictions made one-hot by their argmax
    (``d_acc_target_hard``) and the same soft predictions (``d_acc_target_soft``), each as the
    method's discriminator sees them (:data:`DISCRIMINATOR_INPUTS`: pairs with the target image for the
    conditional methods). Nothing is trained: the U-Net's and discriminator's buffers (batch-norm
    statistics) and the target sampler's random stream are restored, so a run with the probe
    trains exactly as one without. The batches are those the next epoch starts with, which the
    discriminator has not seen yet. Empty for methods without a discriminator.
    """
    if ctx.disc is None or ctx.disc_input not in DISCRIMINATOR_INPUTS:
        return {}
    to_d = DISCRIMINATOR_INPUTS[ctx.disc_input][1]
    state = ctx.target.state()
    saved = [(net, {k: b.clone() for k, b in net.named_buffers()}) for net in (ctx.model, ctx.disc)]
    hard, soft = [], []
    for _ in range(batches):
        image = ctx.batch(ctx.target)["image"]
        _, probs = ctx.probs(image)
        soft.append((ctx.disc(to_d(ctx, image, probs)) < 0).float().mean())
        hard.append((ctx.disc(to_d(ctx, image, harden(probs))) < 0).float().mean())
    ctx.target.set_state(state)
    for net, buffers in saved:
        for k, b in net.named_buffers():
            b.copy_(buffers[k])
    return {"d_acc_target_hard": torch.stack(hard).mean(), "d_acc_target_soft": torch.stack(soft).mean()}
