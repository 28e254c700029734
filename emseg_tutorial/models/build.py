"""One builder table: every network a checkpoint can hold, rebuilt from its ``arch`` key.

A checkpoint stores ``{"arch": model.arch, "model": model.init_kwargs, ...}``;
:func:`build` turns that pair back into a freshly initialised network of the right class, so
:func:`emseg_tutorial.train.load_checkpoint` reads the U-Nets *and* the discriminators the
command line writes.

Examples
--------
>>> net = build("patch_discriminator", {"in_channels": 2, "width": 4, "depth": 2, "norm": None})
>>> type(net).__name__, arch_of(net)
('PatchDiscriminator', 'patch_discriminator')
"""

from __future__ import annotations

from typing import Callable

from torch import nn

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
