"""Checks for the exercises of chapter 5: one discriminator step, the generator step, and
reading the diagnostics.

Examples
--------
>>> from emseg_tutorial.adapt.steps import discriminator_step
>>> bool(check_discriminator_step(discriminator_step))
✓ one discriminator step: ...
True
>>> from emseg_tutorial.adapt.steps import generator_step
>>> bool(check_generator_step(generator_step))
✓ the generator step of the paper: ...
True
>>> from emseg_tutorial.adapt.diagnostics import adaptation_warnings
>>> bool(check_diagnosis(adaptation_warnings))
✓ warning signs of adaptation: ...
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Callable

import torch

from ..losses import bce_fake, bce_real
from ..models import PatchDiscriminator
from ..adapt.diagnostics import MAX_SOURCE_DROP, PRIOR_FACTOR, WARNINGS, adaptation_warnings
from ..adapt.steps import discriminator_step, generator_step, one_hot
from ._compare import as_number, call, fail, require_function
from ._misreadings import MISREADINGS, narrow, warnings_read_as
from .checks import exercise_check

__all__ = ["check_discriminator_step", "check_generator_step", "check_diagnosis"]


def _players(seed: int = 0) -> tuple[PatchDiscriminator, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny discriminator, a 1x1 convolution standing in for the U-Net, real and fake maps."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # leave the notebook's random state alone
        torch.manual_seed(seed)
        disc = PatchDiscriminator(in_channels=2, width=4, depth=2)
        unet = torch.nn.Conv2d(1, 2, kernel_size=1)
    image = torch.randn(2, 1, 16, 16, generator=generator)
    real = one_hot(torch.randint(0, 2, (2, 16, 16), generator=generator), 2)
    return disc, unet, image, real


def _stats(got: Any) -> dict[str, float]:
    """The student's returned statistics as floats, or a failed check saying what is wrong."""
    if not isinstance(got, Mapping):
        fail(f'expected a dict with "loss_d", "acc_real" and "acc_fake", got {type(got).__name__}.')
    missing = {"loss_d", "acc_real", "acc_fake"} - set(got)
    if missing:
        fail(f"the returned dict lacks {sorted(missing)}.")
    values = {k: as_number(got[k]) for k in ("loss_d", "acc_real", "acc_fake")}
    bad = [k for k, v in values.items() if v is None]
    if bad:
        fail(f"{bad} should be numbers (use float(...) or .item()), got {[type(got[k]).__name__ for k in bad]}.")
    return values


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.allclose(p, q, atol=1e-6, rtol=1e-5) for p, q in zip(a.parameters(), b.parameters()))


@exercise_check("one discriminator step")
def check_discriminator_step(func: Callable[..., Mapping[str, float]]) -> str:
    """Check ``func(disc, optimizer, real, fake)`` against
    :func:`emseg_tutorial.adapt.steps.discriminator_step`: two steps on a tiny
    discriminator from the same seed must give the same losses, accuracies and weights, and
    no gradient may reach the network that made ``fake``."""
    require_function(func)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and immune to busy cores
    try:
        return _compare_steps(func)
    finally:
        torch.set_num_threads(threads)


def _compare_steps(func: Callable[..., Mapping[str, float]]) -> str:
    disc, unet, image, real = _players()
    start = copy.deepcopy(disc)
    ref_disc = copy.deepcopy(disc)
    ref_opt = torch.optim.Adam(ref_disc.parameters(), lr=1e-2)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    with torch.no_grad():
        fake_values = torch.softmax(unet(image), dim=1)
        swapped = 0.5 * (bce_fake(start(real)) + bce_real(start(fake_values)))
    for step in (1, 2):
        expected = discriminator_step(ref_disc, ref_opt, real, fake_values)
        fake = torch.softmax(unet(image), dim=1)       # with its graph, as in adaptation
        got = _stats(call(func, disc, opt, real, fake))
        if any(p.grad is not None for p in unet.parameters()):
            fail("gradients reached the U-Net: detach `fake` (fake.detach()) before the discriminator "
                 "scores it; this step must change the discriminator only.")
        if step == 1:
            if math.isclose(got["loss_d"], 2 * expected["loss_d"], rel_tol=1e-4):
                fail("your loss is twice the reference: average the two terms, 0.5 * (L2 + L3).")
            if math.isclose(got["loss_d"], float(swapped), rel_tol=1e-4):
                fail("real and fake are swapped: real label maps should be scored real (target 1), "
                     "the U-Net's predictions fake (target 0).")
        for key in ("loss_d", "acc_real", "acc_fake"):
            if not math.isclose(got[key], expected[key], rel_tol=1e-4, abs_tol=1e-5):
                hint = {"loss_d": "binary cross-entropy on the logits, real against 1 and fake against 0",
                        "acc_real": "the share of real logits > 0, from the logits before the update",
                        "acc_fake": "the share of fake logits < 0, from the logits before the update"}[key]
                fail(f"step {step}: {key} is {got[key]:.5g}, expected {expected[key]:.5g}. Hint: {hint}.")
        if not _same_parameters(disc, ref_disc):
            if _same_parameters(disc, start):
                fail("the discriminator's weights did not change: call loss.backward() and optimizer.step().")
            if step == 2:
                fail("the second step differs from the reference: clear old gradients with "
                     "optimizer.zero_grad() before loss.backward(), or they add up from step to step.")
            fail("after one step the weights differ from the reference: compute one loss on both "
                 "batches and take a single optimizer step.")
    return ("two steps match adapt.steps.discriminator_step (loss, accuracies and updated "
            "weights), and no gradient reached the U-Net.")


@exercise_check("the generator step of the paper")
def check_generator_step(func: Callable[..., Mapping[str, float]]) -> str:
    """Check ``func(disc, optimizer, fake) -> {"loss_g": ...}`` against
    :func:`emseg_tutorial.adapt.steps.generator_step`: two steps on a tiny U-Net stand-in from
    the same seed must give the same adversarial loss and U-Net weights, leave the
    discriminator's weights untouched, put no gradient on it, and leave it trainable."""
    require_function(func)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _compare_generator_steps(func)
    finally:
        torch.set_num_threads(threads)


def _compare_generator_steps(func: Callable[..., Mapping[str, float]]) -> str:
    disc, unet, image, _ = _players(seed=1)
    disc_start = copy.deepcopy(disc)
    ref_disc, ref_unet, unet_start = copy.deepcopy(disc), copy.deepcopy(unet), copy.deepcopy(unet)
    opt = torch.optim.Adam(unet.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(ref_unet.parameters(), lr=1e-2)
    for step in (1, 2):
        expected = float(generator_step(ref_disc, ref_opt, torch.softmax(ref_unet(image), dim=1))["loss_g"])
        fake = torch.softmax(unet(image), dim=1)
        got = call(func, disc, opt, fake)
        if not isinstance(got, Mapping) or "loss_g" not in got or as_number(got["loss_g"]) is None:
            fail(f'return a dict with the adversarial loss as a number under "loss_g", got {got!r:.80}.')
        loss = as_number(got["loss_g"])
        if any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in disc.parameters()):
            fail("gradients reached the discriminator: switch them off while the U-Net steps "
                 "(p.requires_grad_(False) for its parameters, then back to True).")
        if not all(p.requires_grad for p in disc.parameters()):
            fail("the discriminator stays frozen after your step: give its parameters "
                 "requires_grad_(True) back, or the next discriminator step cannot learn.")
        if not _same_parameters(disc, disc_start):
            fail("the discriminator's weights changed: this step moves the U-Net only.")
        if step == 1 and not math.isclose(loss, expected, rel_tol=1e-4, abs_tol=1e-6):
            with torch.no_grad():
                as_fake = float(bce_fake(disc_start(torch.softmax(unet_start(image), dim=1))))
            if math.isclose(loss, as_fake, rel_tol=1e-4):
                hint = ("you scored the predictions against the *fake* target, which is the discriminator's "
                        "goal; the U-Net wants D to call them real (losses.bce_real)")
            elif math.isclose(loss, -as_fake, rel_tol=1e-4):
                hint = ("that is the minimax loss log(1 - D(fake)), which saturates while D wins; the paper's "
                        "generator loss is the non-saturating -log D(fake), the BCE against the real target")
            else:
                hint = "the loss is the non-saturating -log D(fake): the BCE of D's logits on `fake` against real"
            fail(f"the adversarial loss is {loss:.5g}, expected {expected:.5g}. Hint: {hint}.")
        if not _same_parameters(unet, ref_unet):
            if _same_parameters(unet, unet_start):
                fail("the U-Net's weights did not change: call loss.backward() and optimizer.step().")
            if step == 2:
                fail("the second step differs from the reference: call optimizer.zero_grad() before "
                     "loss.backward(), or gradients add up from step to step.")
            fail("after one step the U-Net's weights differ from the reference: one loss, one "
                 "backward pass, one optimizer step.")
    return ("two steps match adapt.steps.generator_step: the U-Net moved only through the "
            "discriminator's verdict, and the discriminator was left untouched and trainable.")


def _epoch(**changes: float | None) -> dict[str, float | None]:
    base = {"d_acc_real": 0.62, "d_acc_fake": 0.58, "target_boundary_fraction": 0.11,
            "source_boundary_fraction": 0.10, "target_entropy": 0.30, "source_val_boundary_jaccard": 0.80}
    return {**base, **changes}


#: Made-up histories: (what they show, history); each of the later ones catches one misreading
#: of :mod:`._misreadings`.
_HISTORIES = [
    ("a healthy run", [_epoch(d_acc_real=None, d_acc_fake=None), _epoch(target_entropy=0.26)]),
    ("a discriminator that wins", [_epoch(), _epoch(d_acc_real=0.97, d_acc_fake=0.95)]),
    ("walls everywhere", [_epoch(), _epoch(target_boundary_fraction=0.35)]),
    ("walls vanishing", [_epoch(), _epoch(target_boundary_fraction=0.03)]),
    ("over-confident predictions", [_epoch(), _epoch(), _epoch(target_entropy=0.10)]),
    ("a network that forgets the source", [_epoch(), _epoch(source_val_boundary_jaccard=0.62)]),
    ("no source validation recorded", [_epoch(source_val_boundary_jaccard=None),
                                       _epoch(source_val_boundary_jaccard=None)]),
    ("everything at once", [_epoch(), _epoch(d_acc_real=0.99, d_acc_fake=0.99, target_boundary_fraction=0.5,
                                             target_entropy=0.05, source_val_boundary_jaccard=0.3)]),
    ("a slow drift, epoch by epoch", [_epoch(), _epoch(source_val_boundary_jaccard=0.77, target_entropy=0.20),
                                      _epoch(source_val_boundary_jaccard=0.74, target_entropy=0.14)]),
    ("a small drop from a low start", [_epoch(source_val_boundary_jaccard=0.50),
                                       _epoch(source_val_boundary_jaccard=0.47)]),
    ("walls thinning to 0.6 of the source's", [_epoch(), _epoch(target_boundary_fraction=0.06)]),
    ("trouble in the middle, recovered at the end",
     [_epoch(), _epoch(d_acc_real=0.95, d_acc_fake=0.95, source_val_boundary_jaccard=0.70), _epoch()]),
    ("a discriminator right on real maps only", [_epoch(), _epoch(d_acc_real=0.95, d_acc_fake=0.60)]),
    ("a target that started (and stayed) far from the source",
     [_epoch(target_boundary_fraction=0.20), _epoch(target_boundary_fraction=0.20)]),
]

_RULES = {"discriminator wins": "last epoch's D accuracy >= 0.9 on both real and fake",
          "boundary fraction": f"last target boundary fraction more than {PRIOR_FACTOR:g}x above or below the "
                               "source's",
          "entropy collapse": "last target entropy below half of its value before adaptation",
          "source drift": f"source validation boundary Jaccard down by more than {MAX_SOURCE_DROP:g} (when recorded)"}


def _as_warnings(got: Any) -> set[str]:
    if isinstance(got, str) or not hasattr(got, "__iter__"):
        fail(f"return a set of warning names (an empty set when all is well), got {got!r:.60}.")
    got = {str(w) for w in got}
    unknown = got - set(WARNINGS)
    if unknown:
        fail(f"unknown warning names {sorted(unknown)}; use the names {list(WARNINGS)}.")
    return got


@exercise_check("warning signs of adaptation")
def check_diagnosis(func: Callable[[Mapping], set[str]], history: Mapping | None = None) -> str:
    """Check ``func(history) -> set of warnings`` against
    :func:`emseg_tutorial.adapt.diagnostics.adaptation_warnings` on made-up histories and, when
    given, on this run's ``history``."""
    require_function(func)
    cases = [(name, {"epochs": epochs}) for name, epochs in _HISTORIES]
    if history is not None:
        cases.append(("this run", history))
    candidates = dict(MISREADINGS)
    for name, case in cases:
        expected = adaptation_warnings(case)
        got = _as_warnings(call(func, copy.deepcopy(case)))
        epochs = list(case["epochs"])
        candidates = narrow(candidates, got, lambda m: warnings_read_as(epochs, m))
        if got != expected:
            rule = "; ".join(f"{w!r}: {_RULES[w]}" for w in sorted(got ^ expected))
            misread = next(iter(candidates.values()), "")
            fail(f"for {name} you found {sorted(got) or 'nothing'}, expected {sorted(expected) or 'nothing'}. "
                 + (f"Hint: {misread}. " if misread else "") + f"Rule to revisit: {rule}.")
    verdict = ""
    if history is not None:
        found = adaptation_warnings(history)
        verdict = f" This run raises: {', '.join(sorted(found)) if found else 'no warning'}."
    return f"your rules agree with the reference on {len(_HISTORIES)} made-up runs.{verdict}"
