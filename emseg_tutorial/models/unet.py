"""A classic 2D U-Net (Ronneberger et al., 2015) that takes slices of any size.

The network is the paper's segmentation model: an encoder of double 3x3 convolutions and
2x2 max-pooling, a symmetric decoder that upsamples and concatenates the encoder features of
the same level (skip connections), and a 1x1 convolution (``head``) that turns features into
one logit per class. ``replace_head`` swaps only that last layer, which is how the paper's
boundary model **M2** starts from the 4-class model **M1**.

The model keeps the keyword arguments it was built with in ``init_kwargs`` (plain, JSON-able
values), so a checkpoint stores ``{"model": net.init_kwargs, "state": net.state_dict()}`` and
:func:`build_model` rebuilds it without pickling any class.

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> net = UNet2d(in_channels=1, out_channels=4, depth=2, base_width=4)
>>> net(torch.zeros(1, 1, 37, 53)).shape
torch.Size([1, 4, 37, 53])
>>> build_model(net.init_kwargs).init_kwargs == net.init_kwargs
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance", "group", None)
UPSAMPLES = ("transpose", "bilinear")


def _norm(kind: str | None, width: int) -> nn.Module:
    """The normalisation layer after each convolution (identity when ``kind`` is None)."""
    if kind == "batch":
        return nn.BatchNorm2d(width)
    if kind == "instance":
        return nn.InstanceNorm2d(width, affine=True)
    if kind == "group":
        # the largest power of two <= 8 that divides the width: 8 groups for 8, 16, 32, ...
        return nn.GroupNorm(math.gcd(8, width), width)
    return nn.Identity()


def conv_block(in_ch: int, out_ch: int, norm: str | None, dropout: float = 0.0) -> nn.Sequential:
    """Two ``3x3 conv (padding 1) -> norm -> ReLU`` layers; keeps the spatial size."""
    bias = norm is None  # a norm layer has its own shift, a conv bias would be redundant
    layers = [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias), _norm(norm, out_ch), nn.ReLU(inplace=True),
              nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias), _norm(norm, out_ch), nn.ReLU(inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


def _upsampler(in_ch: int, out_ch: int, kind: str) -> nn.Module:
    """Double the spatial size and go from ``in_ch`` to ``out_ch`` channels."""
    if kind == "transpose":
        return nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         nn.Conv2d(in_ch, out_ch, kernel_size=1))


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class UNet2d(nn.Module):
    """2D U-Net: encoder, bottleneck, decoder with skip connections and a 1x1 head.

    Parameters
    ----------
    in_channels : int
        Channels of the input image (1 for EM).
    out_channels : int
        Number of classes; the output holds one logit per class (class index = code - 1).
    depth : int
        Number of 2x2 max-poolings (Ronneberger et al. use 4). Level ``i`` has
        ``base_width * 2**i`` feature maps, so the bottleneck has ``base_width * 2**depth``.
    base_width : int
        Feature maps of the first level (Ronneberger et al. use 64).
    norm : {"batch", "instance", "group", None}
        Normalisation after every 3x3 convolution. ``"group"`` uses ``gcd(8, width)``
        groups so the group count always divides the width; ``None`` means no normalisation
        (the convolutions then have a bias).
    dropout : float
        Channel dropout (:class:`torch.nn.Dropout2d`) at the end of the bottleneck block, as
        the original U-Net drops out at the end of the contracting path; 0 disables it.
    upsample : {"transpose", "bilinear"}
        Decoder upsampling: a learned 2x2 transposed convolution with stride 2 (the original
        "up-convolution") or bilinear interpolation followed by a 1x1 convolution.

    Attributes
    ----------
    init_kwargs : dict
        The constructor arguments, JSON-able; ``build_model(net.init_kwargs)`` rebuilds it.
    head : torch.nn.Conv2d
        The 1x1 classification layer.

    Notes
    -----
    Any input size works. ``forward`` pads height and width up to the next multiple of
    ``2**depth`` so every pooling halves an even size, runs the network, and crops the logits
    back to the input size. Padding is added at the bottom and right only and *reflects* the
    image (EM texture continues across the border instead of a dark zero frame that the
    network never saw in training); when the input is too small to reflect (padding wider
    than the image) it replicates the edge pixels instead. The 3x3 convolutions themselves
    zero-pad by one pixel ("same" convolutions), unlike the original's unpadded ("valid")
    convolutions, so no overlap-tile bookkeeping is needed.

    Weights use PyTorch's default initialisation, so the same ``torch.manual_seed`` gives the
    same network. ``norm="instance"`` needs at least two pixels at the bottleneck, i.e. an
    input larger than ``2**depth`` in one dimension, when training.

    References
    ----------
    O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional networks for biomedical image
    segmentation. MICCAI 2015.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> net = UNet2d(out_channels=4, depth=3, base_width=4)
    >>> net(torch.rand(1, 1, 37, 53)).shape
    torch.Size([1, 4, 37, 53])
    >>> net.replace_head(2)
    >>> net.init_kwargs["out_channels"], net.head.out_channels
    (2, 2)
    """

    #: key of this class in :data:`emseg_tutorial.models.ARCHITECTURES` (stored in checkpoints)
    arch = "unet2d"

    def __init__(self, in_channels: int = 1, out_channels: int = 4, depth: int = 4,
                 base_width: int = 32, norm: str | None = "batch", dropout: float = 0.0,
                 upsample: str = "transpose"):
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("out_channels", out_channels, 1)
        _check_int("depth", depth, 1)
        _check_int("base_width", base_width, 1)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
        self.init_kwargs = {"in_channels": in_channels, "out_channels": out_channels, "depth": depth,
                            "base_width": base_width, "norm": norm, "dropout": float(dropout),
                            "upsample": upsample}

        widths = [base_width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [conv_block(in_channels if i == 0 else widths[i - 1], widths[i], norm) for i in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = conv_block(widths[depth - 1], widths[depth], norm, dropout)
        # decoder levels run from the deepest (depth - 1) up to level 0
        self.upsamplers = nn.ModuleList(
            [_upsampler(widths[i + 1], widths[i], upsample) for i in reversed(range(depth))])
        self.decoders = nn.ModuleList(
            [conv_block(2 * widths[i], widths[i], norm) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, out_channels, H, W)`` for images ``(N, in_channels, H, W)`` of any H, W."""
        if x.ndim != 4 or x.shape[1] != self.init_kwargs["in_channels"]:
            raise ValueError(f"expected input (N, {self.init_kwargs['in_channels']}, H, W), "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = self.pad(x)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsampler, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([skip, upsampler(x)], dim=1))
        return self.head(x)[..., :h, :w]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded at the bottom and right to a multiple of ``2**depth`` (see the Notes)."""
        h, w = x.shape[-2:]
        multiple = 2 ** self.init_kwargs["depth"]
        pad_h, pad_w = -h % multiple, -w % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return x

    def replace_head(self, out_channels: int) -> None:
        """Swap in a freshly initialised 1x1 head with ``out_channels`` classes (in place).

        Every other layer keeps its weights: the paper's M1 (4 classes) -> M2 (boundary vs.
        rest) transfer. The new head is created on the old head's device and dtype, and
        ``init_kwargs["out_channels"]`` is updated so checkpoints rebuild the new shape.
        """
        _check_int("out_channels", out_channels, 1)
        old = self.head
        self.head = nn.Conv2d(old.in_channels, out_channels, kernel_size=1).to(
            device=old.weight.device, dtype=old.weight.dtype)
        self.init_kwargs["out_channels"] = out_channels


def build_model(kwargs: dict) -> UNet2d:
    """Rebuild a :class:`UNet2d` from its ``init_kwargs`` (e.g. the ``"model"`` entry of a checkpoint).

    Parameters
    ----------
    kwargs : dict
        Constructor keyword arguments; unknown keys are an error.

    Returns
    -------
    UNet2d
        A freshly initialised network; load the weights with ``load_state_dict``.

    Raises
    ------
    ValueError
        If ``kwargs`` is not a dict, has unknown keys or invalid values.

    Examples
    --------
    >>> net = build_model({"out_channels": 2, "depth": 2, "base_width": 4, "norm": "group"})
    >>> net.init_kwargs["norm"], net.head.out_channels
    ('group', 2)
    """
    if not isinstance(kwargs, dict):
        raise ValueError(f"model kwargs must be a dict, got {type(kwargs).__name__}")
    known = ("in_channels", "out_channels", "depth", "base_width", "norm", "dropout", "upsample")
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"unknown UNet2d arguments {unknown}; expected a subset of {list(known)}")
    return UNet2d(**kwargs)


def context_pixels(depth: int, upsample: str = "transpose") -> int:
    """Most pixels on one side of an output pixel that its value depends on (in y or in x).

    A bound from the layers of :class:`UNet2d` along its deepest path: each 3x3 convolution
    at level ``l`` (stride ``2**l``) reaches ``2**l`` pixels to each side, and each 2x2 max-pool
    (and each bilinear upsampling) up to ``2**l`` to one side; the bound is reached (the tests
    check it with gradients). A tile's outputs farther than this from its edges are those of the
    whole slice: the halo of tiled prediction.

    Examples
    --------
    >>> context_pixels(2), context_pixels(4), context_pixels(4, "bilinear")
    (23, 107, 122)
    """
    _check_int("depth", depth, 1)
    if upsample not in UPSAMPLES:
        raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
    levels = 2 ** depth - 1  # sum of 2**l over the levels 0 .. depth - 1
    convs = 2 * levels + 2 * 2 ** depth + 2 * levels  # encoder, bottleneck, decoder: two 3x3 each
    pools = levels
    upsampling = levels if upsample == "bilinear" else 0  # a transposed 2x2 convolution adds none
    return convs + pools + upsampling


class ProbabilityUNet(nn.Module):
    """A :class:`UNet2d` followed by a softmax over classes: what the bioimage.io package runs.

    Built from the U-Net's constructor arguments, so state-dict weights load with
    ``ProbabilityUNet(**kwargs)``. This file imports only ``math`` and ``torch``: the package
    ships it as the architecture's source (see :mod:`emseg_tutorial.predict.export`).

    Examples
    --------
    >>> net = ProbabilityUNet(out_channels=2, depth=2, base_width=4)
    >>> net(torch.zeros(1, 1, 16, 16)).sum(1).allclose(torch.ones(1, 16, 16))
    True
    """

    def __init__(self, **kwargs):
        super().__init__()
        self.unet = UNet2d(**kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.unet(x), dim=1)
