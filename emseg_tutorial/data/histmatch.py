"""Intensity normalisation across domains: histogram matching and per-patch rank normalisation.

Two tools, both pure functions:

* :func:`match_to_source` maps the target volume's grey values so that their histogram equals
  the source volume's (:func:`skimage.exposure.match_histograms`, on the whole volume at once).
  It is the no-training baseline ``histmatch`` of chapter 6: the source model then predicts the
  matched target. It fixes *intensity* differences (gamma, contrast, offsets) but not
  *structural* ones (section thickness, blur, cell sizes); chapter 1 shows the twins differ in
  both.
* :func:`rank_normalize` replaces every patch's values by their rank within the patch (a torch
  batch, on its device), so each patch gets the same flat histogram. The conditional
  discriminator sees its image channel this way, in both domains, so it cannot tell source
  from target by grey values alone.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> source = rng.normal(100, 10, (2, 16, 16))
>>> target = rng.normal(30, 3, (2, 16, 16)) ** 1.5
>>> matched = match_to_source(target, source)
>>> bool(abs(matched.mean() - source.mean()) < 1.0)
True
"""

from __future__ import annotations

import numpy as np
from skimage.exposure import match_histograms


def match_to_source(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Target intensities remapped so their histogram is the source's (same shape as ``target``).

    Parameters
    ----------
    target, source : ndarray, (Z, Y, X)
        Grey values; shapes may differ. The mapping is monotonic, so the order of grey values
        (and hence every edge and structure) is kept.

    Returns
    -------
    ndarray
        In ``source``'s dtype when it is uint8 (rounded), else float64.
    """
    target, source = np.asarray(target), np.asarray(source)
    if target.size == 0 or source.size == 0:
        raise ValueError("histogram matching needs non-empty target and source volumes")
    matched = match_histograms(target, source)
    if source.dtype == np.uint8:
        return np.clip(np.rint(matched), 0, 255).astype(np.uint8)
    return matched.astype(np.float64)


def rank_normalize(patches) -> "torch.Tensor":
    """Each patch's values replaced by their rank, scaled to zero mean and unit variance.

    Parameters
    ----------
    patches : Tensor or array-like, (B, ..., H, W)
        A batch (a tensor stays on its device); every item (all trailing dimensions after the
        first) is ranked on its own.

    Returns
    -------
    Tensor of the same shape, float32: in every item the values are an evenly spaced ramp (ties
    broken by position), so every item has exactly the same histogram whatever its domain.

    Examples
    --------
    >>> x = np.array([[[3.0, 1.0], [2.0, 10.0]]])
    >>> print(rank_normalize(x).numpy().round(3))
    [[[ 0.447 -1.342]
      [-0.447  1.342]]]
    """
    import torch

    x = torch.as_tensor(patches)
    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[1]
    if n < 2:
        raise ValueError(f"rank normalisation needs at least 2 values per patch, got {n}")
    ranks = torch.empty_like(flat, dtype=torch.float32)
    order = flat.argsort(dim=1, stable=True)
    ranks.scatter_(1, order, torch.arange(n, dtype=torch.float32, device=flat.device).expand_as(flat).contiguous())
    ramp = (ranks - (n - 1) / 2) / np.sqrt((n * n - 1) / 12)  # mean 0, population variance 1
    return ramp.reshape(x.shape)
