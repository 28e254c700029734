"""AdaBN: re-estimate batch-norm statistics on the target, with exact averages.

Li et al. (2016, *Revisiting batch normalization for practical domain adaptation*) keep every
learned weight of a source model and replace only the mean and variance each batch-norm layer
normalises with by those of the target domain. No labels, no gradient steps.

"Exact" here means: after :func:`adapt_batchnorm`, every batch-norm layer normalises its input
over the given target volume to mean 0 and variance 1 per channel, *with the layers before it
already adapted*. Running PyTorch's training mode over target batches does not give that: its
running averages weigh recent batches more (momentum), and each batch is normalised with its
own statistics while the averages are collected, so later layers see inputs that differ from
those at prediction time. Here the layers are visited in order; for each, one pass over the
volume (stopped right after that layer) sums its input per channel in float64; then its
running mean and variance are set from those sums before the next layer is measured.

Examples
--------
>>> import numpy as np, torch
>>> from emseg_tutorial.models import UNet2d
>>> net = UNet2d(out_channels=2, depth=2, base_width=4)
>>> image = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)
>>> adapted = adapt_batchnorm(net, image)
>>> stats = normalised_statistics(adapted, image)
>>> bool(np.allclose(stats["mean"], 0, atol=1e-4) and np.allclose(stats["var"], 1, atol=1e-3))
True
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .._validate import check_image
from ..data.normalize import Normalizer, normalizer_of
from ..models import UNet2d
from ..progress import progress as progress_bar


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the measured layer has been reached."""


#: Most bytes of activations :func:`adapt_batchnorm` keeps to adapt a U-Net in one pass.
MEMORY_BUDGET = 2 * 1024**3


def batchnorm_layers(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The model's batch-norm layers in the order a forward pass meets them (definition order)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


class _Moments:
    """Per-channel count, sum and sum of squares of a layer's input, in float64."""

    def __init__(self):
        self.n, self.s, self.ss = 0, 0.0, 0.0

    def add(self, x: torch.Tensor) -> None:
        self.n += x.numel() // x.shape[1]
        self.s = self.s + x.sum(dim=(0, 2, 3), dtype=torch.float64)
        self.ss = self.ss + x.float().square().sum(dim=(0, 2, 3), dtype=torch.float64)

    def store(self, layer: torch.nn.modules.batchnorm._BatchNorm) -> None:
        """Set ``layer``'s running mean and (population) variance to these moments."""
        mean = self.s / self.n
        var = (self.ss / self.n - mean * mean).clamp_min(0)
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        # PyTorch keeps the unbiased variance in running_var and normalises with it at eval time;
        # storing the population variance makes the normalised target exactly unit-variance.
        layer.running_var.copy_(var.to(layer.running_var.dtype))
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.zero_()


def _run(block: torch.nn.Module, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Apply a sequential block to every batch, adapting each batch-norm layer on the way."""
    for module in block:
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            moments = _Moments()
            for x in xs:
                moments.add(x)
            moments.store(module)
        xs = [module(x) for x in xs]
    return xs


def _adapt_unet_in_one_pass(model: UNet2d, batches: list[torch.Tensor]) -> None:
    """Walk :class:`UNet2d`'s forward once over the whole volume, block by block, keeping every
    batch's activations (and skips), and adapt each batch-norm layer when its input is complete."""
    xs, skips = [model.pad(x) for x in batches], []
    for encoder in model.encoders:
        xs = _run(encoder, xs)
        skips.append(xs)
        xs = [model.pool(x) for x in xs]
    xs = _run(model.bottleneck, xs)
    for upsampler, decoder, skip in zip(model.upsamplers, model.decoders, reversed(skips)):
        xs = _run(decoder, [torch.cat([s, upsampler(x)], dim=1) for s, x in zip(skip, xs)])


def _adapt_by_prefix_passes(model: torch.nn.Module, batches: list[torch.Tensor], layers, progress: bool) -> None:
    """Any network: one pass per batch-norm layer, stopped right after reaching it."""
    for layer in progress_bar(layers, desc="AdaBN", unit="layer", enabled=progress):
        moments = _Moments()

        def record(module, args):
            moments.add(args[0])
            raise _Stop

        handle = layer.register_forward_pre_hook(record)
        try:
            for batch in batches:
                try:
                    model(batch)
                except _Stop:
                    pass
        finally:
            handle.remove()
        moments.store(layer)


def _one_pass_bytes(model: torch.nn.Module, image_shape: tuple[int, ...]) -> int | None:
    """Activations the one-pass walk keeps (the widest level three times: skip, input, output),
    or None when the model is not a U-Net whose batch-norm layers all sit in its blocks."""
    if not isinstance(model, UNet2d):
        return None
    blocks = [*model.encoders, model.bottleneck, *model.decoders]
    if sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for b in blocks for m in b) != len(
            batchnorm_layers(model)):
        return None
    z, y, x = image_shape
    return 3 * 4 * z * y * x * 2 * model.init_kwargs["base_width"]


@torch.no_grad()
def adapt_batchnorm(model: torch.nn.Module, image: np.ndarray, *, normalizer: Normalizer | None = None,
                    batch_size: int = 4, device: str | torch.device | None = None, progress: bool = False,
                    memory_budget: int = MEMORY_BUDGET) -> torch.nn.Module:
    """A copy of ``model`` whose batch-norm statistics are those of ``image`` (AdaBN).

    Parameters
    ----------
    model : torch.nn.Module
        A source-trained network with batch-norm layers (left untouched).
    image : ndarray, (Z, Y, X)
        Unlabelled target volume, standardised with ``normalizer`` as at prediction time.
    normalizer : Normalizer, optional
        The target volume's normaliser (:attr:`Volume.normalizer
        <emseg_tutorial.data.volume.Volume.normalizer>`), the one its predictions and reports
        use; pass it when ``image`` is part of the volume. Default: ``image``'s own
        (:func:`~emseg_tutorial.data.normalize.normalizer_of`).
    batch_size : int
        Slices per forward pass (memory only; the result does not depend on it).
    device : str or torch.device, optional
        Default: the model's device.
    progress : bool
        A progress bar over the layers (of the layer-by-layer method).
    memory_budget : int
        Bytes of activations a :class:`~emseg_tutorial.models.UNet2d` may keep to be adapted in
        **one** forward pass over the volume (block by block, every slice's activations kept
        until the next batch-norm layer has its statistics). Above it, or for other networks,
        each layer gets its own pass, stopped right after it (the same numbers, more time).

    Returns
    -------
    torch.nn.Module
        The adapted copy, in eval mode. Only ``running_mean``/``running_var`` differ.
    """
    image = check_image(image, "target image")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = copy.deepcopy(model).to(device).eval()
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no batch-norm layers: AdaBN has nothing to adapt")
    x = torch.from_numpy(normalizer_of(image, normalizer)(image))
    batches = [x[z0:z0 + batch_size, None].to(device) for z0 in range(0, x.shape[0], batch_size)]
    needed = _one_pass_bytes(model, image.shape)
    if needed is not None and needed <= memory_budget:
        _adapt_unet_in_one_pass(model, batches)
    else:
        _adapt_by_prefix_passes(model, batches, layers, progress)
    return model


@torch.no_grad()
def normalised_statistics(model: torch.nn.Module, image: np.ndarray, *, normalizer: Normalizer | None = None,
                          batch_size: int = 4) -> dict:
    """Per-channel mean and variance, over ``image``, of what each batch-norm layer outputs
    *before* its affine scale and shift (eval mode). AdaBN makes them 0 and 1 (with the same
    ``normalizer`` as :func:`adapt_batchnorm`; default: ``image``'s own).

    Returns ``{"mean": ndarray, "var": ndarray}``, all layers' channels concatenated.
    """
    model = model.eval()
    device = next(model.parameters()).device
    layers = batchnorm_layers(model)
    acc = [{"n": 0, "s": 0.0, "ss": 0.0} for _ in layers]
    handles = []
    for layer, sums in zip(layers, acc):
        def record(module, inputs, sums=sums):
            x = inputs[0].double()
            z = (x - module.running_mean.double()[:, None, None]) / torch.sqrt(
                module.running_var.double()[:, None, None] + module.eps)
            z = z.transpose(0, 1).reshape(module.num_features, -1)
            sums["n"] += z.shape[1]
            sums["s"] = sums["s"] + z.sum(1)
            sums["ss"] = sums["ss"] + (z * z).sum(1)
        handles.append(layer.register_forward_pre_hook(record))
    try:
        image = check_image(image, "image")
        x = torch.from_numpy(normalizer_of(image, normalizer)(image))
        for z0 in range(0, x.shape[0], batch_size):
            model(x[z0:z0 + batch_size, None].to(device))
    finally:
        for h in handles:
            h.remove()
    means = [(a["s"] / a["n"]).cpu().numpy() for a in acc]
    variances = [(a["ss"] / a["n"]).cpu().numpy() - m ** 2 for a, m in zip(acc, means)]
    return {"mean": np.concatenate(means), "var": np.concatenate(variances)}
