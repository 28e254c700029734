"""Whole-slice prediction of any size, tiled with overlap and blended where a slice is large.

A 2D U-Net predicts each z slice on its own. Slices no larger than ``tile`` go through the
network whole (several at a time); larger slices are cut into overlapping tiles whose
probabilities are blended with a window that falls off towards the tile edges, so seams do
not show. :func:`predict_slices` holds that logic for a block of slices; the in-memory
:func:`predict_probabilities` and the streamed :mod:`emseg_tutorial.predict.stream` both call it.

Examples
--------
>>> import numpy as np, torch
>>> from emseg_tutorial.models import UNet2d
>>> net = UNet2d(out_channels=2, depth=2, base_width=4)
>>> probs = predict_probabilities(net, np.zeros((2, 50, 70), np.uint8), tile=32, overlap=8)
>>> probs.shape, bool(np.allclose(probs.sum(0), 1, atol=1e-5))
((2, 2, 50, 70), True)

A part of a volume is predicted with the whole volume's normaliser, as the whole:

>>> from emseg_tutorial.data.normalize import Normalizer
>>> image = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)
>>> whole = predict_probabilities(net.eval(), image)
>>> part = predict_probabilities(net, image[1:2], normalizer=Normalizer.from_volume(image))
>>> bool(np.allclose(part[:, 0], whole[:, 1], atol=1e-6))
True
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .._validate import InputError, check_image
from ..data.normalize import Normalizer, normalizer_of
from ..devices import inference_precision, memory_format
from ..models import check_model
from ..progress import progress as progress_bar


def _window(size: tuple[int, int], overlap: int) -> torch.Tensor:
    """Blending weights of one tile: 1 in the middle, a linear ramp over ``overlap`` pixels."""
    ramps = []
    for n in size:
        r = torch.ones(n)
        if overlap > 0:
            edge = torch.linspace(1.0 / (overlap + 1), 1.0, overlap)[: n // 2]
            r[: len(edge)] = edge
            r[n - len(edge):] = torch.minimum(r[n - len(edge):], edge.flip(0))
        ramps.append(r)
    return ramps[0][:, None] * ramps[1][None, :]


def _starts(n: int, tile: int, overlap: int) -> list[int]:
    """Tile start positions covering ``0..n`` with at least ``overlap`` pixels shared."""
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(starts))


@torch.no_grad()
def _forward(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Softmax of ``model`` on ``x``, left on ``device`` (the caller copies the result back once)."""
    with inference_precision(device).autocast():
        logits = model(x.to(device))
    return torch.softmax(logits.float(), dim=1)


def prepare_model(model: torch.nn.Module, device: torch.device, name: str | None = None) -> torch.nn.Module:
    """Check ``model``, put it on ``device`` in eval mode, in the device's layout.

    The check is :func:`emseg_tutorial.models.check_model` (one input channel, a task's class
    count, finite weights; messages name ``name``), so no prediction starts with a model that
    would write wrong codes. The layout is the one training uses
    (:func:`~emseg_tutorial.devices.memory_format`: channels-last on the CPU and on CUDA, the
    same branch on both); a channels-last copy leaves the caller's model as it was, apart from
    the move and eval mode.
    """
    check_model(model, name)
    model = model.to(device).eval()
    layout = memory_format(device)
    if layout == torch.contiguous_format:
        return model
    return copy.deepcopy(model).to(memory_format=layout)


#: smallest tile side: a U-Net of depth 4 halves it to 1 pixel
MIN_TILE = 16


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_tiling(tile: int, overlap: int, batch_size: int = 1) -> None:
    """Raise InputError unless ``tile`` is an integer ``>= 16``, ``overlap`` one with
    ``0 <= overlap < tile // 2`` and ``batch_size`` one ``>= 1``; each message names the argument.

    Examples
    --------
    >>> check_tiling(512, 32, batch_size=-1)
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: batch_size must be an integer >= 1 (slices or tiles per forward pass), got -1
    """
    if not _is_int(tile) or tile < MIN_TILE:
        raise InputError(f"tile must be an integer >= {MIN_TILE} (the largest slice side predicted at once), "
                         f"got {tile!r}")
    if not _is_int(overlap) or not 0 <= overlap < tile // 2:
        raise InputError(f"overlap must be an integer from 0 to {tile // 2 - 1} (less than half of tile={tile}), "
                         f"got {overlap!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1 (slices or tiles per forward pass), got {batch_size!r}")


def slices_per_step(shape: tuple[int, int, int], tile: int, batch_size: int) -> int:
    """Slices :func:`predict_slices` gets at once: ``batch_size`` whole slices, or 1 tiled slice."""
    return batch_size if shape[1] <= tile and shape[2] <= tile else 1


def predict_slices(model: torch.nn.Module, x: torch.Tensor, *, tile: int = 512, overlap: int = 32,
                   batch_size: int = 4, device: torch.device | None = None) -> np.ndarray:
    """Probabilities ``(C, n, Y, X)`` of a block of standardised slices ``x`` ``(n, Y, X)``.

    The one place the tiling lives: slices no larger than ``tile`` go through the network
    whole, ``batch_size`` at a time; larger slices are cut into tiles that share ``overlap``
    pixels, predicted ``batch_size`` tiles at a time, and blended with :func:`_window`. Each
    slice is predicted on its own (a 2D network needs no z context), so any block of slices
    gives the same result as the whole volume. ``model`` must already be on ``device`` and in
    eval mode (:func:`prepare_model`, as :func:`predict_probabilities` and the streamed
    :func:`~emseg_tutorial.predict.stream.predict_file` do). Probabilities stay on the device
    until the whole block is done: one copy back to the host per call.
    """
    device = device if device is not None else next(model.parameters()).device
    nz, ny, nx = x.shape
    if ny <= tile and nx <= tile:
        parts = [_forward(model, x[z0:z0 + batch_size, None], device) for z0 in range(0, nz, batch_size)]
        return torch.cat(parts).permute(1, 0, 2, 3).cpu().numpy()
    th, tw = min(tile, ny), min(tile, nx)
    window = _window((th, tw), overlap).to(device)
    corners = [(y, x0) for y in _starts(ny, th, overlap) for x0 in _starts(nx, tw, overlap)]
    out = []
    for z in range(nz):
        acc = norm = None
        xz = x[z].to(device)  # one copy of the slice; tiles are cut on the device
        for i in range(0, len(corners), batch_size):
            chunk = corners[i:i + batch_size]
            tiles = torch.stack([xz[y:y + th, x0:x0 + tw] for y, x0 in chunk])[:, None]
            p = _forward(model, tiles, device)
            if acc is None:
                acc = torch.zeros((p.shape[1], ny, nx), device=device)
                norm = torch.zeros((ny, nx), device=device)
            for (y, x0), pt in zip(chunk, p):
                acc[:, y:y + th, x0:x0 + tw] += pt * window
                norm[y:y + th, x0:x0 + tw] += window
        out.append(acc / norm)
    return torch.stack(out, dim=1).cpu().numpy()


def predict_probabilities(model: torch.nn.Module, image: np.ndarray, *, normalizer: Normalizer | None = None,
                          tile: int = 512, overlap: int = 32, batch_size: int = 4,
                          device: str | torch.device | None = None, progress: bool = False) -> np.ndarray:
    """Class probabilities of every pixel of a ``(Z, Y, X)`` volume: ``(C, Z, Y, X)`` float32.

    The whole volume is in memory; for stacks larger than memory use the streamed
    :func:`emseg_tutorial.predict.stream.predict_file`, which gives the same numbers.

    Parameters
    ----------
    model : torch.nn.Module
        A network mapping ``(N, 1, H, W)`` to ``(N, C, H, W)`` logits for any ``H, W``.
    image : ndarray, (Z, Y, X) or (Y, X)
        Raw intensities, scaled to [0, 1] and standardised with ``normalizer``.
    normalizer : Normalizer, optional
        The normaliser of the volume ``image`` belongs to (:attr:`Volume.normalizer
        <emseg_tutorial.data.volume.Volume.normalizer>`; the trainer's and the streamed
        ``predict``'s are the same numbers). Pass it whenever ``image`` is part of a volume
        (held-out slices, every n-th slice, one slice): each slice is then predicted exactly as
        in the whole volume. Default: ``image``'s own
        (:func:`~emseg_tutorial.data.normalize.normalizer_of`), right only for a whole volume.
    tile : int
        Largest slice side sent through the network at once; larger slices are tiled.
    overlap : int
        Pixels shared by neighbouring tiles (blended with a linear ramp).
    batch_size : int
        Slices or tiles per forward pass.
    device : str or torch.device, optional
        Default: the model's device.
    progress : bool
        Show a progress bar over slices.
    """
    image = check_image(image, "image")
    check_tiling(tile, overlap, batch_size)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = prepare_model(model, device)
    x = torch.from_numpy(normalizer_of(image, normalizer)(image))
    step = slices_per_step(x.shape, tile, batch_size)
    out: np.ndarray | None = None
    for z0 in progress_bar(range(0, x.shape[0], step), desc="predict", unit="slice" if step == 1 else "batch",
                           enabled=progress):
        p = predict_slices(model, x[z0:z0 + step], tile=tile, overlap=overlap, batch_size=batch_size,
                           device=device)
        if out is None:
            out = np.empty((p.shape[0],) + tuple(x.shape), np.float32)
        out[:, z0:z0 + step] = p
    return out


def probabilities_to_codes(probabilities: np.ndarray) -> np.ndarray:
    """Most likely class of every pixel as a label code (``argmax + 1``), uint8 ``(Z, Y, X)``."""
    return (np.argmax(probabilities, axis=0) + 1).astype(np.uint8)


def predict_labels(model: torch.nn.Module, image: np.ndarray, *, normalizer: Normalizer | None = None,
                   **kwargs) -> np.ndarray:
    """Label codes of a volume (see :func:`predict_probabilities` for the arguments; pass the
    whole volume's ``normalizer`` when ``image`` is part of it)."""
    return probabilities_to_codes(predict_probabilities(model, image, normalizer=normalizer, **kwargs))

