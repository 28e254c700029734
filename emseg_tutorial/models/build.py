"""One builder table: every network a checkpoint can hold, rebuilt from its ``arch`` key.

A checkpoint stores ``{"arch": model.arch, "model": model.init_kwargs, ...}``;
:func:`build` turns that pair back into a freshly initialised network of the right class, so
:func:`emseg_tutorial.store.load_checkpoint` reads the U-Nets *and* the discriminators the
command line writes.

Examples
--------
>>> net = build("patch_discriminator", {"in_channels": 2, "width": 4, "depth": 2, "norm": None})
>>> type(net).__name__, arch_of(net)
('PatchDiscriminator', 'patch_discriminator')

:func:`check_model` is the one check of a segmentation network before it is used (predicted
with, trained further, adapted): one input channel, a head that matches a task, finite weights.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .._validate import InputError
from ..labels import TASKS, num_classes
from .discriminators import PatchDiscriminator
from .unet import UNet2d, build_model

#: arch key -> builder from constructor keyword arguments
ARCHITECTURES: dict[str, Callable[[dict], nn.Module]] = {
    UNet2d.arch: build_model,
    PatchDiscriminator.arch: lambda kwargs: PatchDiscriminator(**kwargs),
}


def arch_of(model: nn.Module) -> str:
    """The ``arch`` key of ``model`` (a :data:`ARCHITECTURES` entry)."""
    arch = getattr(model, "arch", None)
    if arch not in ARCHITECTURES or not hasattr(model, "init_kwargs"):
        raise ValueError(f"{type(model).__name__} is not a network of this library (no arch/init_kwargs); "
                         f"known: {sorted(ARCHITECTURES)}")
    return arch


def build(arch: str, kwargs: dict) -> nn.Module:
    """A new network of kind ``arch`` built from ``kwargs`` (weights freshly initialised).

    Raises
    ------
    ValueError
        Unknown ``arch`` or arguments the class does not take.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown network kind {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if not isinstance(kwargs, dict):
        raise ValueError(f"model kwargs must be a dict, got {type(kwargs).__name__}")
    try:
        return ARCHITECTURES[arch](kwargs)
    except TypeError as err:
        raise ValueError(f"{arch}: {err}") from None


#: class counts of the tasks (boundary 2, multiclass 4): the heads a segmentation network may have
TASK_CLASSES: tuple[int, ...] = tuple(sorted({num_classes(t) for t in TASKS}))


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def check_model(model: nn.Module, name: str | None = None, classes: Sequence[int] | None = TASK_CLASSES) -> nn.Module:
    """Return ``model`` after checking it can segment a greyscale EM volume, else raise.

    * one input channel (the networks of this library say so in ``init_kwargs``; other
      modules are judged by their first convolution);
    * a head whose class count is in ``classes`` (default: a task's, 2 or 4; None skips this;
      checked for networks of this library, whose ``init_kwargs`` state it);
    * every weight and buffer finite (a diverged training saves NaN).

    Parameters
    ----------
    model : torch.nn.Module
    name : str, optional
        How messages name it; default: the file it was loaded from
        (:func:`~emseg_tutorial.store.load_checkpoint` notes it as ``model.checkpoint``), else "model".
    classes : sequence of int, optional
        Allowed class counts.

    Raises
    ------
    InputError
        A ``ValueError``; one line naming ``name`` and the problem.

    Examples
    --------
    >>> check_model(UNet2d(out_channels=5, depth=1, base_width=4), "m5.pt")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: m5.pt: the network predicts 5 classes, but a task has 2 (boundary) or 4 (multiclass); it is not a segmentation model of this tutorial
    """
    name = name or getattr(model, "checkpoint", None) or "model"
    kwargs = getattr(model, "init_kwargs", None)
    if kwargs is not None and getattr(model, "arch", None) == PatchDiscriminator.arch:
        raise InputError(f"{name}: is a discriminator, not a segmentation network (U-Net)")
    convs = _convs(model)
    in_channels = kwargs.get("in_channels") if kwargs else (convs[0].in_channels if convs else None)
    if in_channels is not None and in_channels != 1:
        raise InputError(f"{name}: the network takes {in_channels} input channels, but EM volumes have 1 "
                         f"(greyscale); it was not made for these images")
    if classes is not None and kwargs and "out_channels" in kwargs and kwargs["out_channels"] not in classes:
        tasks = " or ".join(f"{num_classes(t)} ({t})" for t in sorted(TASKS, key=num_classes))
        raise InputError(f"{name}: the network predicts {kwargs['out_channels']} classes, but a task has "
                         f"{tasks}; it is not a segmentation model of this tutorial")
    with torch.no_grad():
        bad = [key for key, value in list(model.named_parameters()) + list(model.named_buffers())
               if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise InputError(f"{name}: {len(bad)} weight tensors hold NaN or infinite values (first: {bad[0]}); "
                         f"the training that wrote it diverged")
    return model
