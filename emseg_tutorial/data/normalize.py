"""Intensity normalisation: raw values to [0, 1], then standardised, in memory or slice by slice.

A :class:`Normalizer` belongs to a *volume*: it is computed once, from the whole volume, where
the volume enters (:attr:`Volume.normalizer <.volume.Volume.normalizer>`, the trainer, the
adaptation loop, the streamed ``predict``), and every prediction of that volume or of any part
of it (held-out slices, every n-th slice, one slice) is standardised with it, so a score does
not depend on which slices were predicted together. A function given a plain array and no
normaliser computes the array's own (:func:`normalizer_of`): the one documented fallback.

What the network sees is ``(unit - mean) / std``, where ``unit`` is the image scaled to
[0, 1] (uint8 divided by 255; any other dtype scaled between its 0.5th and 99.5th percentiles
and clipped, robust to a few hot pixels) and ``mean``, ``std`` are those of the whole
[0, 1] volume (the standard deviation at least 1e-3). A :class:`Normalizer` holds those three
numbers (the percentile limits, or None for uint8, the mean and the standard deviation):

* :meth:`Normalizer.from_volume` computes them from an array in memory;
* :func:`streaming_stats` computes them from a :class:`~.readers.LazyVolume` one slice at a
  time (:func:`intensity_limits` from a bounded sample, then mean and variance merged slice by
  slice in float64), the same numbers to float rounding;
* :meth:`Normalizer.unit` scales a block to [0, 1], calling the normaliser standardises it,
  and :meth:`Normalizer.to_unit` undoes the standardisation (back to [0, 1]).

:func:`to_unit_range`, :func:`standardize` and :func:`volume_stats` are the same three steps
as plain functions (the sampler, prediction and AdaBN use them); each formula exists once.

Examples
--------
>>> img = np.random.default_rng(0).normal(100, 20, (4, 16, 16))
>>> norm = Normalizer.from_volume(img)
>>> x = norm(img)
>>> round(float(x.mean()), 6), bool(np.allclose(norm.to_unit(x), norm.unit(img), atol=1e-6))
(0.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..progress import progress as progress_bar
from .errors import VolumeError

# The streaming functions read any LazyVolume (``shape``, ``dtype``, ``name``, ``read(z0, z1)``,
# :mod:`.readers`); it is named in annotations only, not imported: the readers build
# Volumes, and a Volume carries its Normalizer (:mod:`.volume`).

#: Most voxels the percentile pass keeps in memory (16 Mi voxels: 16 MB for uint8 input).
SAMPLE_BUDGET = 1 << 24
#: Percentiles mapped to 0 and 1 for images that are not uint8.
PERCENTILES = (0.5, 99.5)
#: Smallest standard deviation used to standardise (a flat volume is not divided by 0).
MIN_STD = 1e-3


def percentile_limits(values: np.ndarray) -> tuple[float, float] | None:
    """The intensities mapped to 0 and 1: None for uint8 (divided by 255), else the 0.5th and
    99.5th percentiles of ``values``.

    Examples
    --------
    >>> percentile_limits(np.arange(1000.0))
    (4.995, 994.005)
    >>> percentile_limits(np.zeros(3, np.uint8)) is None
    True
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return None
    lo, hi = (float(v) for v in np.percentile(values, PERCENTILES))
    return lo, hi


def _scale(block: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """The one [0, 1] formula: ``block / 255`` without limits, else clipped ``(block - lo) / (hi - lo)``."""
    block = np.asarray(block)
    if limits is None:
        return block.astype(np.float32) / 255.0
    lo, hi = limits
    if hi <= lo:
        return np.zeros(block.shape, np.float32)
    return np.clip((block.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """Scale an image to float32 in [0, 1] with its own limits (:func:`percentile_limits`).

    ``uint8`` is divided by 255. Anything else is scaled between its 0.5th and 99.5th
    percentiles and clipped, which is robust to a few hot pixels.

    Examples
    --------
    >>> to_unit_range(np.array([0, 51, 255], np.uint8)).tolist()
    [0.0, 0.20000000298023224, 1.0]
    """
    image = np.asarray(image)
    return _scale(image, percentile_limits(image))


def volume_stats(unit: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (at least 1e-3) of a [0, 1] volume, accumulated in float64
    (as :func:`streaming_stats` merges them, so both give the same normaliser to float rounding).

    Examples
    --------
    >>> volume_stats(np.array([0.0, 1.0]))
    (0.5, 0.5)
    """
    return float(unit.mean(dtype=np.float64)), max(float(unit.std(dtype=np.float64)), MIN_STD)


def standardize(unit: np.ndarray, stats: tuple[float, float] | None = None) -> np.ndarray:
    """``(unit - mean) / std`` with the volume's own statistics unless ``stats`` is given.

    One formula for arrays (prediction) and tensors (the patch sampler, on its device): the
    result has the type of ``unit`` and, for float32 input, float32 values.

    Examples
    --------
    >>> standardize(np.array([0.0, 1.0], np.float32)).tolist()
    [-1.0, 1.0]
    >>> import torch
    >>> standardize(torch.tensor([0.0, 1.0]), (0.5, 0.5)).tolist()
    [-1.0, 1.0]
    """
    mean, std = stats if stats is not None else volume_stats(unit)
    return (unit - np.float32(mean)) / np.float32(std)


@dataclass(frozen=True)
class Normalizer:
    """Scale raw intensities to [0, 1], then standardise: what the network saw in training.

    Attributes
    ----------
    limits : tuple of float or None
        None for uint8 images (divided by 255), else the ``(lo, hi)`` intensities mapped to 0
        and 1 (clipped outside).
    mean, std : float
        Those of the [0, 1] volume.

    Examples
    --------
    >>> Normalizer(None, 0.5, 0.25)(np.array([[[0, 255]]], np.uint8)).tolist()
    [[[-2.0, 2.0]]]
    >>> Normalizer(None, 0.5, 0.25).to_unit(np.array([-2.0, 0.0, 9.0])).tolist()
    [0.0, 0.5, 1.0]
    """

    limits: tuple[float, float] | None
    mean: float
    std: float

    @classmethod
    def from_volume(cls, array: np.ndarray) -> "Normalizer":
        """The normaliser of a whole array in memory (what :func:`to_unit_range` and
        :func:`volume_stats` compute)."""
        array = np.asarray(array)
        limits = percentile_limits(array)
        return cls(limits, *volume_stats(_scale(array, limits)))

    @property
    def stats(self) -> tuple[float, float]:
        """``(mean, std)``, as :func:`standardize` takes them."""
        return self.mean, self.std

    def unit(self, block: np.ndarray) -> np.ndarray:
        """[0, 1] float32 values, as :func:`to_unit_range` with this volume's limits."""
        return _scale(block, self.limits)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Standardised float32 values: ``(unit(block) - mean) / std``."""
        return self.standardize(self.unit(block))

    def standardize(self, unit: np.ndarray) -> np.ndarray:
        """``(unit - mean) / std`` of values already in [0, 1] (e.g. jittered patches), as
        :func:`standardize` (an array stays an array, a tensor a tensor on its device)."""
        return standardize(unit, self.stats)

    def to_unit(self, standardised: np.ndarray) -> np.ndarray:
        """Undo the standardisation: ``standardised * std + mean`` clipped to [0, 1], of the type
        of ``standardised`` (an array, or a tensor on its device; float32 for float32 input)."""
        return (standardised * np.float32(self.std) + np.float32(self.mean)).clip(0.0, 1.0)


def normalizer_of(image: np.ndarray, normalizer: Normalizer | None = None) -> Normalizer:
    """``normalizer`` when given, else the normaliser of ``image`` itself: the one fallback of
    every prediction function handed a plain array.

    Pass the whole volume's normaliser whenever ``image`` is part of a volume (held-out slices,
    every n-th slice, one slice); computed from the part, the numbers depend on the part.

    Examples
    --------
    >>> img = np.array([[[0, 255]], [[255, 255]]], np.uint8)
    >>> normalizer_of(img[1:]).mean, normalizer_of(img[1:], Normalizer.from_volume(img)).mean
    (1.0, 0.75)
    """
    return Normalizer.from_volume(image) if normalizer is None else check_normalizer(normalizer)


def check_normalizer(normalizer: Normalizer) -> Normalizer:
    """``normalizer``, or a TypeError naming the argument when it is not a :class:`Normalizer`."""
    if not isinstance(normalizer, Normalizer):
        raise TypeError(f"normalizer must be a Normalizer (e.g. Volume.normalizer), got {type(normalizer).__name__}")
    return normalizer


def _blocks(volume: LazyVolume, indices, progress: bool, desc: str):
    for z in progress_bar(indices, desc=desc, unit="slice", enabled=progress):
        block = volume.read(z, z + 1)
        if np.issubdtype(block.dtype, np.floating) and not np.isfinite(block).all():
            raise VolumeError(f"{volume.name}: slice {z} holds NaN or infinite values")
        yield block


def intensity_limits(volume: LazyVolume, sample_budget: int = SAMPLE_BUDGET,
                     progress: bool = False) -> tuple[float, float] | None:
    """:func:`percentile_limits` of a lazy volume (None for uint8), from a bounded sample.

    Exact when the volume has at most ``sample_budget`` voxels; otherwise taken over up to 64
    evenly spaced slices, each subsampled with the same stride ``s`` in y and x, ``s`` chosen
    so that the sample has at most ``sample_budget`` voxels.

    Examples
    --------
    >>> from emseg_tutorial.data.readers import ArrayVolume
    >>> intensity_limits(ArrayVolume(np.arange(1000.0).reshape(10, 10, 10)))
    (4.995, 994.005)
    """
    if volume.dtype == np.uint8:
        return None
    nz, ny, nx = volume.shape
    if nz * ny * nx <= sample_budget:
        indices, stride = range(nz), 1
    else:
        indices = np.unique(np.linspace(0, nz - 1, min(nz, 64)).round().astype(int)).tolist()
        stride = max(1, math.ceil(math.sqrt(len(indices) * ny * nx / sample_budget)))
    sample = np.concatenate([b[0, ::stride, ::stride].ravel()
                             for b in _blocks(volume, indices, progress, "percentiles")])
    return percentile_limits(sample)


def streaming_stats(volume: LazyVolume, sample_budget: int = SAMPLE_BUDGET, progress: bool = False) -> Normalizer:
    """The :class:`Normalizer` of a volume, computed reading one slice at a time.

    Mean and variance of the [0, 1] values are merged slice by slice in float64 (the pairwise
    update of Chan, Golub and LeVeque, 1979), so they match :meth:`Normalizer.from_volume` to
    float rounding; the standard deviation has the same floor of 1e-3.

    Examples
    --------
    >>> from emseg_tutorial.data.readers import ArrayVolume
    >>> img = np.random.default_rng(0).normal(100, 20, (4, 16, 16))
    >>> norm = streaming_stats(ArrayVolume(img))
    >>> np.allclose(norm.stats, Normalizer.from_volume(img).stats)
    True
    """
    limits = intensity_limits(volume, sample_budget, progress)
    return merge_moments(slab_moments(volume, 0, volume.shape[0], limits, progress), limits)


def slab_moments(volume: LazyVolume, z0: int, z1: int, limits: tuple[float, float] | None,
                 progress: bool = False) -> list[tuple[int, float, float]]:
    """``(count, mean, count * variance)`` of the [0, 1] values of each slice ``z0..z1-1``.

    What :func:`streaming_stats` merges; workers of a cluster compute them for their slabs
    and :func:`merge_moments` merges them in z order on the client, the same arithmetic.

    Examples
    --------
    >>> from emseg_tutorial.data.readers import ArrayVolume
    >>> slab_moments(ArrayVolume(np.array([[[0, 255]], [[255, 255]]], np.uint8)), 0, 2, None)
    [(2, 0.5, 0.5), (2, 1.0, 0.0)]
    """
    return [(int(unit.size), float(unit.mean(dtype=np.float64)), float(unit.var(dtype=np.float64)) * unit.size)
            for unit in (_scale(b, limits) for b in _blocks(volume, range(z0, z1), progress, "statistics"))]


def merge_moments(moments, limits: tuple[float, float] | None) -> Normalizer:
    """The :class:`Normalizer` of per-slice moments (:func:`slab_moments`), merged in order.

    The pairwise update of Chan, Golub and LeVeque (1979) in float64.

    Examples
    --------
    >>> merge_moments([(2, 0.5, 0.5), (2, 1.0, 0.0)], None)
    Normalizer(limits=None, mean=0.75, std=0.4330127018922193)
    """
    count, mean, m2 = 0, 0.0, 0.0
    for n, m, v in moments:
        delta = m - mean
        total = count + n
        mean += delta * n / total
        m2 += v + delta * delta * count * n / total
        count = total
    return Normalizer(limits, mean, max(math.sqrt(m2 / count), MIN_STD))
