"""Fully convolutional discriminators over label maps (PatchGAN style).

The paper's Experiment 3 needs a network that tells source ground-truth label maps from the
U-Net's predictions on target slices. :class:`PatchDiscriminator` is the usual choice for
segmentation outputs (Isola et al. 2017; AdaptSegNet, Tsai et al. 2018): a stack of 4 x 4
convolutions with stride 2 and leaky ReLUs, ending in a 1-channel map of logits. Each output
logit judges one patch of the input (its receptive field), so the discriminator looks at local
structure (how walls look, how thick they are, how they meet) rather than at the whole slice.

Architecture for ``in_channels=C``, ``width=w``, ``depth=d``::

    conv4x4/2 (C -> w)      LeakyReLU(0.2)
    conv4x4/2 (w -> 2w)     [norm] LeakyReLU(0.2)
    ...                     (d stride-2 layers, width doubling, capped at 8w)
    conv3x3/1 (-> 1)        logits, (H / 2**d, W / 2**d) rounded down

A logit sees a window of 38 x 38 pixels with ``depth=3`` and 78 x 78 with ``depth=4``. The same class serves
the conditional discriminator of the paper's future work: give it the image as an extra input
channel (``in_channels = 1 + n_classes``).

Examples
--------
>>> import torch
>>> d = PatchDiscriminator(in_channels=2, width=8, depth=3)
>>> d(torch.zeros(1, 2, 64, 64)).shape
torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "batch", None)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: ``(N, in_channels, H, W)`` -> ``(N, 1, ~H/2**depth, ~W/2**depth)`` logits.

    Parameters
    ----------
    in_channels : int
        Input channels: the number of classes for label maps, plus 1 for an image channel.
    width : int
        Channels of the first layer (doubled per layer, capped at ``8 * width``).
    depth : int
        Number of stride-2 layers.
    norm : {"instance", "batch", None}
        Normalisation after every convolution but the first and the last (None, as in
        AdaptSegNet, keeps the discriminator from using batch statistics as a shortcut).
    """

    #: key of this class in :data:`emseg_tutorial.models.ARCHITECTURES` (stored in checkpoints)
    arch = "patch_discriminator"

    def __init__(self, in_channels: int = 2, width: int = 32, depth: int = 4, norm: str | None = None):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("width", width), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.init_kwargs = {"in_channels": in_channels, "width": width, "depth": depth, "norm": norm}
        layers: list[nn.Module] = []
        ch_in = in_channels
        for i in range(depth):
            ch_out = width * min(2**i, 8)
            layers.append(nn.Conv2d(ch_in, ch_out, 4, stride=2, padding=1))
            if i > 0 and norm == "instance":
                layers.append(nn.InstanceNorm2d(ch_out, affine=True))
            elif i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(ch_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch_in = ch_out
        layers.append(nn.Conv2d(ch_in, 1, 3, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.init_kwargs["in_channels"]:
            raise ValueError(f"expected input (N, {self.init_kwargs['in_channels']}, H, W), got {tuple(x.shape)}")
        return self.net(x)
