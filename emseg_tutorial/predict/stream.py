"""Streamed prediction: a volume larger than memory, read and written a slice at a time.

:func:`predict_file` is what ``python -m emseg_tutorial predict`` runs. It makes three kinds
of pass over the input, each reading one slice (or one batch of small slices) at a time
through :func:`~emseg_tutorial.data.readers.open_volume`:

1. **Intensity limits** (only for images that are not uint8): the 0.5th and 99.5th
   percentiles that :func:`~emseg_tutorial.data.normalize.to_unit_range` uses, computed from a
   sample of at most ``sample_budget`` voxels: every voxel when the volume is that small (then
   the limits are exactly the in-memory ones), else up to 64 evenly spaced slices subsampled
   with the same stride in y and x.
2. **Mean and standard deviation** of the [0, 1] values over the *whole* volume, merged slice
   by slice in float64 (Chan et al.'s pairwise update), the statistics
   :func:`~emseg_tutorial.data.normalize.standardize` would compute in memory
   (passes 1 and 2 are :func:`~emseg_tutorial.data.normalize.streaming_stats`).
3. **Prediction**: each block is scaled and standardised with those numbers and passed to
   :func:`~emseg_tutorial.predict.predict_slices` (the same tiling, overlap and blending as the
   in-memory :func:`~emseg_tutorial.predict.predict_probabilities`); the label codes and, if
   asked, the probabilities are appended to the outputs
   (:func:`~emseg_tutorial.data.writers.open_writers`: temporary files renamed at the end).
   A zarr output is written chunk by chunk in place instead and **resumes**: run the same
   prediction again after a kill and the slices already written (and marked) are skipped,
   the rest, including chunks the killed run left unmarked, are predicted again
   (:func:`job_key` names "the same prediction").

The network is 2D, so a slice needs no neighbouring slices (no z halo); the halo of the
tiles is their ``overlap`` within the slice. Memory therefore stays proportional to one
slice (plus the network's activations on ``batch_size`` tiles), whatever the depth of the
stack, and the result equals the in-memory prediction up to float rounding of the statistics.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from emseg_tutorial.data.readers import read_labels
>>> from emseg_tutorial.data.writers import write_volume
>>> from emseg_tutorial.models import UNet2d
>>> folder = tempfile.mkdtemp()
>>> image = np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8)
>>> write_volume(os.path.join(folder, "img.tif"), image)
>>> net = UNet2d(out_channels=2, depth=2, base_width=4)
>>> result = predict_file(net, os.path.join(folder, "img.tif"), os.path.join(folder, "pred.tif"), tile=32,
...                       overlap=8)
>>> result.shape, result.classes, read_labels(os.path.join(folder, "pred.tif")).shape
((3, 40, 40), 2, (3, 40, 40))
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

import numpy as np
import torch

from ..data.errors import VolumeError
from ..data.outputs import check_outputs
from ..data.readers import LazyVolume, open_volume
from ..data.writers import open_writers
from ..labels import MAX_CODE
from ..data.normalize import SAMPLE_BUDGET, Normalizer, check_normalizer, streaming_stats
from ..progress import progress as progress_bar
from .tiled import check_tiling, predict_slices, prepare_model, probabilities_to_codes, slices_per_step


def _known_classes(model: torch.nn.Module) -> int | None:
    """The class count of a network of this library (its ``out_channels``), else None."""
    kwargs = getattr(model, "init_kwargs", None)
    return int(kwargs["out_channels"]) if isinstance(kwargs, dict) and "out_channels" in kwargs else None


def job_key(model: torch.nn.Module, volume: LazyVolume, norm: Normalizer, **settings) -> str:
    """A key naming one prediction: the weights, the input (name, shape, dtype, statistics), the
    settings. A zarr output written under the same key is resumed, under another rewritten.

    Examples
    --------
    >>> from emseg_tutorial.data.readers import ArrayVolume
    >>> vol = ArrayVolume(np.zeros((1, 4, 4), np.uint8))
    >>> net = torch.nn.Conv2d(1, 2, 1)
    >>> len(job_key(net, vol, Normalizer(None, 0.0, 1.0), tile=512))
    64
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr((volume.name, volume.shape, str(volume.dtype), norm.limits, norm.mean, norm.std,
                   sorted(settings.items()))).encode())
    return h.hexdigest()


class StreamedPrediction(NamedTuple):
    """What :func:`predict_file` did: input shape, number of classes, normaliser, slices per read."""

    shape: tuple[int, int, int]
    classes: int
    normalizer: Normalizer
    slices_per_read: int


def predict_file(model: torch.nn.Module, image: str | os.PathLike | LazyVolume, out: str | os.PathLike | None = None,
                 probabilities: str | os.PathLike | None = None, *, tile: int = 512, overlap: int = 32,
                 batch_size: int = 4, device: str | torch.device | None = None, progress: bool = False,
                 sample_budget: int = SAMPLE_BUDGET, model_name: str | None = None,
                 normalizer: Normalizer | None = None) -> StreamedPrediction:
    """Predict a volume on disk slice by slice and write the results as they come.

    Parameters
    ----------
    model : torch.nn.Module
        A network mapping ``(N, 1, H, W)`` to ``(N, C, H, W)`` logits.
    image : str, path or LazyVolume
        Input spec (tif, ``FILE.h5:dataset``, ``.npy``, folder of slices) or an opened volume.
    out : str or path, optional
        Label codes (``argmax + 1``), uint8 ``(Z, Y, X)``; in zarr an NGFF label image (a
        pyramid, ``IMAGE.zarr:labels/NAME`` to make it a label of that image).
    probabilities : str or path, optional
        Class probabilities, float32 ``(C, Z, Y, X)`` (an ImageJ ``ZCYX`` hyperstack in tif).
    tile, overlap, batch_size, device
        As in :func:`~emseg_tutorial.predict.predict_probabilities`.
    progress : bool
        Progress bars over the passes.
    sample_budget : int
        Most voxels used to find the intensity limits of non-uint8 images (see
        :func:`~emseg_tutorial.data.normalize.intensity_limits`).
    model_name : str, optional
        How messages name the model; default: its checkpoint file when it was loaded from one.
    normalizer : Normalizer, optional
        The volume's normaliser, when already known (e.g. :attr:`Volume.normalizer
        <emseg_tutorial.data.volume.Volume.normalizer>` of the volume the file holds); default:
        the file's own, from :func:`~emseg_tutorial.data.normalize.streaming_stats` (two reading
        passes; the same numbers as :meth:`~emseg_tutorial.data.normalize.Normalizer.from_volume`
        of the array, to float rounding, when it has at most ``sample_budget`` voxels).

    Returns
    -------
    StreamedPrediction

    Raises
    ------
    VolumeError
        Unreadable input, NaN/inf values, or an output that cannot be written (unknown format,
        parent not a writable folder, the same file as the input or as the other output: see
        :func:`~emseg_tutorial.data.outputs.check_outputs`), checked before any prediction.
        Outputs are written to temporary files renamed only at the end, so an error leaves none.
    ValueError
        A model that cannot segment these images (:func:`emseg_tutorial.models.check_model`:
        input channels, class count, NaN weights), checked before any prediction.
    """
    if out is None and probabilities is None:
        raise ValueError("give at least one output: out (label codes) or probabilities")
    source = image.name if isinstance(image, LazyVolume) and image.method != "array" else image
    check_outputs({"out": out, "probabilities": probabilities},
                  {"image": source} if not isinstance(source, LazyVolume) else None)
    check_tiling(tile, overlap, batch_size)
    if normalizer is not None:
        check_normalizer(normalizer)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model_name = model_name or getattr(model, "checkpoint", None) or "model"
    model = prepare_model(model, device, model_name)
    volume = image if isinstance(image, LazyVolume) else open_volume(image)
    try:
        norm = streaming_stats(volume, sample_budget, progress) if normalizer is None else normalizer
        nz, ny, nx = volume.shape
        step = slices_per_step(volume.shape, tile, batch_size)

        def predict(z0: int) -> np.ndarray:
            block = volume.read(z0, min(z0 + step, nz))
            x = torch.from_numpy(norm(block))
            return predict_slices(model, x, tile=tile, overlap=overlap, batch_size=batch_size, device=device)

        first = None if _known_classes(model) else predict(0)
        classes = first.shape[0] if first is not None else _known_classes(model)
        if out is not None and not 2 <= classes <= MAX_CODE:
            raise VolumeError(f"{model_name}: predicts {classes} classes, but label codes 1-{MAX_CODE} need 2 to "
                              f"{MAX_CODE}; nothing was written to {out}")
        targets = []
        if out is not None:
            targets.append((out, (nz, ny, nx), np.uint8))
        if probabilities is not None:
            targets.append((probabilities, (classes, nz, ny, nx), np.float32))
        job = job_key(model, volume, norm, tile=tile, overlap=overlap)
        with open_writers(targets, volume.voxel_size, job=job, labels=[out] if out is not None else []) as writers:
            for z0 in progress_bar(range(0, nz, step), desc="predict", unit="slice" if step == 1 else "batch",
                                   enabled=progress):
                z1 = min(z0 + step, nz)
                if all(getattr(w, "is_written", lambda a, b: False)(z0, z1) for w in writers):
                    for writer in writers:  # resumed zarr outputs: written by an earlier run of this job
                        writer.skip(z1 - z0)
                    continue
                probs = first if z0 == 0 and first is not None else predict(z0)
                for writer in writers:
                    writer.write(probs if writer.channels else probabilities_to_codes(probs))
        return StreamedPrediction(volume.shape, classes, norm, step)
    finally:
        if volume is not image:
            volume.close()
