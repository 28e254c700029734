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

from ..data.formats import check_image
from ..data.normalize import Normalizer
from ..progress import progress as progress_bar


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the measured layer has been reached."""


def batchnorm_layers(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The model's batch-norm layers in the order a forward pass meets them (definition order)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _slices(image: np.ndarray, batch_size: int):
    x = torch.from_numpy(Normalizer.from_volume(image)(image))
    for z0 in range(0, x.shape[0], batch_size):
        yield x[z0:z0 + batch_size, None]


@torch.no_grad()
def adapt_batchnorm(model: torch.nn.Module, image: np.ndarray, *, batch_size: int = 4,
                    device: str | torch.device | None = None, progress: bool = False) -> torch.nn.Module:
    """A copy of ``model`` whose batch-norm statistics are those of ``image`` (AdaBN).

    Parameters
    ----------
    model : torch.nn.Module
        A source-trained network with batch-norm layers (left untouched).
    image : ndarray, (Z, Y, X)
        Unlabelled target volume, standardised as at prediction time.
    batch_size : int
        Slices per forward pass (memory only; the result does not depend on it).
    device : str or torch.device, optional
        Default: the model's device.
    progress : bool
        A progress bar over the layers.

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
    for layer in progress_bar(layers, desc="AdaBN", unit="layer", enabled=progress):
        sums = {"n": 0, "s": 0.0, "ss": 0.0}

        def record(module, inputs, sums=sums):
            x = inputs[0].double().transpose(0, 1).reshape(module.num_features, -1)
            sums["n"] += x.shape[1]
            sums["s"] = sums["s"] + x.sum(1)
            sums["ss"] = sums["ss"] + (x * x).sum(1)
            raise _Stop

        handle = layer.register_forward_pre_hook(record)
        try:
            for batch in _slices(image, batch_size):
                try:
                    model(batch.to(device))
                except _Stop:
                    pass
        finally:
            handle.remove()
        n = sums["n"]
        mean = sums["s"] / n
        var = (sums["ss"] / n - mean * mean).clamp_min(0)
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        # PyTorch keeps the unbiased variance in running_var and normalises with it at eval time;
        # storing the population variance makes the normalised target exactly unit-variance.
        layer.running_var.copy_(var.to(layer.running_var.dtype))
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.zero_()
    return model


@torch.no_grad()
def normalised_statistics(model: torch.nn.Module, image: np.ndarray, *, batch_size: int = 4) -> dict:
    """Per-channel mean and variance, over ``image``, of what each batch-norm layer outputs
    *before* its affine scale and shift (eval mode). AdaBN makes them 0 and 1.

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
        for batch in _slices(check_image(image, "image"), batch_size):
            model(batch.to(device))
    finally:
        for h in handles:
            h.remove()
    means = [(a["s"] / a["n"]).cpu().numpy() for a in acc]
    variances = [(a["ss"] / a["n"]).cpu().numpy() - m ** 2 for a, m in zip(acc, means)]
    return {"mean": np.concatenate(means), "var": np.concatenate(variances)}
