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


def build(arch: str, kwargs: dict, name: str | None = None) -> nn.Module:
    """A new network of kind ``arch`` built from ``kwargs`` (weights freshly initialised).

    Sizes are checked first (:func:`check_kwargs`: ranges and the weight count), so no call
    allocates more than :data:`MAX_PARAMETERS` weights.

    Raises
    ------
    ValueError
        Unknown ``arch``, arguments the class does not take, or sizes out of range
        (:class:`~emseg_tutorial._validate.InputError`, naming ``name``: default ``arch``).
    """
    check_kwargs(arch, kwargs, name)
    return _construct(arch, kwargs)


#: class counts of the tasks (one class vs the rest 2, multiclass 4): the heads a segmentation network may have
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
    emseg_tutorial._validate.InputError: m5.pt: the network predicts 5 classes, but a task has 2 (boundary, cytoplasm, mitochondria, glia) or 4 (multiclass); it is not a segmentation model of this tutorial
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
        by_count: dict[int, list[str]] = {}
        for t in TASKS:  # "2 (boundary, cytoplasm, ...)": one entry per class count
            by_count.setdefault(num_classes(t), []).append(t)
        tasks = " or ".join(f"{n} ({', '.join(names)})" for n, names in sorted(by_count.items()))
        raise InputError(f"{name}: the network predicts {kwargs['out_channels']} classes, but a task has "
                         f"{tasks}; it is not a segmentation model of this tutorial")
    with torch.no_grad():
        bad = [key for key, value in list(model.named_parameters()) + list(model.named_buffers())
               if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise InputError(f"{name}: {len(bad)} weight tensors hold NaN or infinite values (first: {bad[0]}); "
                         f"the training that wrote it diverged")
    return model


#: ranges of the integer settings of each network kind: arch -> {argument: (smallest, largest)}.
#: The largest are far beyond any network of the tutorial (the paper's U-Net: depth 4, width 64)
#: and keep a stored ``depth: 40`` from allocating 2**40 feature maps before anything else is read.
KWARG_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    UNet2d.arch: {"in_channels": (1, 64), "out_channels": (1, 64), "depth": (1, 8), "base_width": (1, 512)},
    PatchDiscriminator.arch: {"in_channels": (1, 64), "width": (1, 512), "depth": (1, 8)},
}
#: most weights a network may have: 16 times the paper's U-Net (31 M), 2 GB in float32
MAX_PARAMETERS = 500_000_000


def check_kwargs(arch: str, kwargs: dict, name: str | None = None) -> None:
    """Raise InputError unless the sizes in ``kwargs`` are in :data:`KWARG_RANGES` and the network
    they describe has at most :data:`MAX_PARAMETERS` weights; nothing is allocated.

    ``name`` (a checkpoint file) starts the message; default ``arch``. The weight count comes
    from the network built on PyTorch's ``meta`` device (shapes only, no memory).

    Examples
    --------
    >>> check_kwargs("unet2d", {"depth": 40}, "tiny.pt")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: tiny.pt: its network settings are out of range: depth 40 (unet2d takes 1 to 8); not a network this library builds
    >>> check_kwargs("unet2d", {"depth": 8, "base_width": 512}, "big.pt")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: big.pt: its network settings describe 509665740804 weights (unet2d with depth 8, base_width 512), more than the 500000000 this library builds
    """
    name = name or arch
    if arch not in ARCHITECTURES:
        raise InputError(f"{name}: unknown network kind {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if not isinstance(kwargs, dict):
        raise InputError(f"{name}: network settings must be a dict, got {type(kwargs).__name__}")
    for key, (lo, hi) in KWARG_RANGES[arch].items():
        value = kwargs.get(key, lo)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{name}: its network setting {key} must be an integer from {lo} to {hi}, got {value!r}")
        if not lo <= value <= hi:
            raise InputError(f"{name}: its network settings are out of range: {key} {value} ({arch} takes {lo} to "
                             f"{hi}); not a network this library builds")
    try:
        count = sum(t.numel() for t in meta_network(arch, kwargs).parameters())
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"{name}: its network settings do not build a {arch} ({str(err).strip()})") from None
    if count > MAX_PARAMETERS:
        sizes = ", ".join(f"{k} {kwargs[k]}" for k in KWARG_RANGES[arch] if k in kwargs)
        raise InputError(f"{name}: its network settings describe {count} weights ({arch} with {sizes}), more than "
                         f"the {MAX_PARAMETERS} this library builds")


def meta_network(arch: str, kwargs: dict) -> nn.Module:
    """The network of ``arch`` and ``kwargs`` on the ``meta`` device: every tensor's shape, no memory.

    Call it after the ranges are checked (:func:`check_kwargs`); ValueError for bad arguments,
    as :func:`build`.
    """
    with torch.device("meta"):
        return _construct(arch, kwargs)


def _construct(arch: str, kwargs: dict) -> nn.Module:
    try:
        return ARCHITECTURES[arch](kwargs)
    except TypeError as err:
        raise ValueError(f"{arch}: {err}") from None
