"""The acquisition: the microscope's blur, intensity curve, drift, noise and slice misalignment.

Examples
--------
>>> import numpy as np
>>> _shift(np.arange(4).reshape(2, 2), 0, 1).tolist()
[[0, 0], [2, 2]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from .numerics import _NORMAL, _conv_axis, _gauss_taps, _slice_rng
from .params import DomainParams

if TYPE_CHECKING:
    from .renderer import _Renderer

#: The microscope's blur kernels stop at this many sigmas in xy (5 taps for sigma 0.9) and in z
#: (3 taps for sigma 0.8: one sub-slice of halo each side).
_PSF_TRUNCATE = 2.0
_Z_TRUNCATE = 1.5


def _smooth_walk(rng: np.random.Generator, n: int, step: float) -> np.ndarray:
    """A random walk of ``n`` steps, recentred on 0 and gently smoothed."""
    walk = np.cumsum(rng.normal(0.0, step, n))
    return ndi.gaussian_filter1d(walk - walk.mean(), 1.0, mode="nearest") if n > 1 else walk * 0



def _psf(rend: _Renderer, image: np.ndarray) -> None:
    """The microscope's xy blur, in place, slice by slice."""
    sigma = rend.p.psf_sigma[1]
    if sigma <= 0:
        return
    taps = _gauss_taps(sigma, truncate=_PSF_TRUNCATE)
    mid, tmp = rend.buf("psf_mid", image.shape[1:]), rend.buf("psf_tmp", image.shape[1:])
    for sl in image:
        _conv_axis(sl, taps, -2, out=mid, tmp=tmp)
        _conv_axis(mid, taps, -1, out=sl, tmp=tmp)


def _acquire(p: DomainParams, image: np.ndarray, z0: int, gain: np.ndarray, offset: np.ndarray,
             seed: int, out_u8: np.ndarray | None = None) -> np.ndarray:
    """Intensity curve, drift and noise of slices starting at ``z0``, in place; returns uint8
    (written into ``out_u8`` when given: no block-sized temporary).

    Computes ``255 * (offset + gain * clip(image, 0, 1) ** gamma + noise * N(0, 1))``, rounded
    (half up) and clipped to [0, 255] (without a gamma curve, only the result is clipped).
    """
    out = image
    if p.gamma != 1.0:  # without a curve the final clip is enough
        np.clip(image, 0.0, 1.0, out=image)
        out **= np.float32(p.gamma)
    n = image.shape[0]
    out *= (255.0 * gain[z0:z0 + n, None, None]).astype(np.float32)
    noise = np.empty(out.shape[1:], np.float32)
    for i in range(n):
        # The offset (and 0.5, so that truncation rounds) rides on the noise table: one pass.
        table = _NORMAL * np.float32(255.0 * p.noise) + np.float32(255.0 * offset[z0 + i] + 0.5)
        rng = _slice_rng(seed, p.name, -1 - (z0 + i))  # distinct from the sub-slice streams
        np.take(table, np.frombuffer(rng.bytes(2 * noise.size), np.uint16).reshape(noise.shape),
                out=noise, mode="clip")
        out[i] += noise
    np.clip(out, 0, 255.49, out=out)
    if out_u8 is None:
        return out.astype(np.uint8)
    np.copyto(out_u8, out, casting="unsafe")  # truncation, as astype
    return out_u8


def _misalign(p: DomainParams, rng: np.random.Generator, nz: int) -> np.ndarray:
    """Integer ``(dy, dx)`` shift of every returned slice (mostly zero)."""
    shifts = np.zeros((nz, 2), dtype=int)
    if p.misalign_prob > 0 and p.misalign_max > 0:
        hit = rng.random(nz) < p.misalign_prob
        shifts[hit] = rng.integers(-p.misalign_max, p.misalign_max + 1, (int(hit.sum()), 2))
    return shifts


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift a 2D array by whole pixels, repeating the edge (no wrap-around)."""
    if dy == 0 and dx == 0:
        return a
    ny, nx = a.shape
    ys = np.clip(np.arange(ny) - dy, 0, ny - 1)
    xs = np.clip(np.arange(nx) - dx, 0, nx - 1)
    return a[np.ix_(ys, xs)]
