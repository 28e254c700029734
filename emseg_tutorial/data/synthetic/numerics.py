"""Array kernels of the renderer: wave sums, separable blurs, walls, discs and random streams.

Each function is exact against the reference operation it replaces (``tests/test_twins_fast.py``
checks them against scipy and skimage) and writes into the caller's buffers when given.

Examples
--------
>>> import numpy as np
>>> _thick_boundaries(np.array([[1, 1, 2, 2]])).astype(int).tolist()
[[0, 1, 1, 0]]
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri as ndi_special_ndtri

from .params import DOMAINS


def _slice_rng(seed: int, domain: str, s: int) -> np.random.Generator:
    """Random stream of sub-slice ``s``: independent of how the volume is split in blocks."""
    return np.random.default_rng([seed, DOMAINS.index(domain), s + 1_000_000])


def _wave_grid(k: np.ndarray, phase: np.ndarray, amp: np.ndarray, s: float, ys: np.ndarray,
               xs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``sum_w amp[w, c] * sin(k_w . (s, y, x) + phase_w)`` on the grid ``ys x xs``: ``(C, Y, X)``.

    Uses ``sin(a + b) = sin a cos b + cos a sin b``: one matrix product of inner size ``2 W`` per
    channel instead of one ``sin`` per wave and pixel.
    """
    ay = k[:, 1, None] * ys[None]  # (W, Y)
    bx = k[:, 2, None] * xs[None] + (k[:, 0] * s + phase)[:, None]  # (W, X)
    left = np.concatenate([np.sin(ay), np.cos(ay)]).T.astype(np.float32)  # (Y, 2W)
    right = np.concatenate([np.cos(bx), np.sin(bx)]).astype(np.float32)  # (2W, X)
    amp2 = np.tile(amp, (2, 1)).astype(np.float32)  # (2W, C)
    if out is None:
        out = np.empty((amp.shape[1], len(ys), len(xs)), np.float32)
    for c in range(amp.shape[1]):
        np.matmul(left * amp2[:, c], right, out=out[c])
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], lengths_nm: tuple[float, float],
                  pixel_nm: float, waves: int = 24) -> np.ndarray:
    """Smooth noise of unit variance on a ``shape`` grid: ``waves`` plane waves of random direction
    and phase, their wavelengths uniform in ``lengths_nm`` (at ``pixel_nm`` per pixel).

    Examples
    --------
    >>> f = _smooth_field(np.random.default_rng(0), (64, 64), (120.0, 300.0), 6.0)
    >>> f.shape, f.dtype.name, bool(0.3 < f.std() < 2.0)
    ((64, 64), 'float32', True)
    """
    w = waves
    angle = rng.uniform(0, 2 * np.pi, w)
    length = rng.uniform(*lengths_nm, w) / pixel_nm
    k = np.stack([np.zeros(w), np.sin(angle), np.cos(angle)], 1) * (2 * np.pi / length)[:, None]
    amp = np.full((w, 1), np.sqrt(2.0 / w))
    return _wave_grid(k, rng.uniform(0, 2 * np.pi, w), amp, 0.0, np.arange(shape[0], dtype=float),
                      np.arange(shape[1], dtype=float))[0]


def _wave_points(k: np.ndarray, phase: np.ndarray, amp: np.ndarray, s: float, y: np.ndarray,
                 x: np.ndarray) -> np.ndarray:
    """The same sum at scattered points ``(y, x)``: ``(C, n)``."""
    arg = k[:, 0, None] * s + k[:, 1, None] * y[None] + k[:, 2, None] * x[None] + phase[:, None]
    return amp.T @ np.sin(arg)


def _gauss_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1D Gaussian kernel, as :func:`scipy.ndimage.gaussian_filter1d` makes it."""
    r = int(truncate * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _conv_axis(a: np.ndarray, taps: np.ndarray, axis: int, out: np.ndarray | None = None,
               tmp: np.ndarray | None = None) -> np.ndarray:
    """Correlate ``a`` with symmetric ``taps`` along ``axis`` (edges repeated, scipy's ``nearest``).

    The two pixels of each pair of taps are summed before weighting, in place. Along the last
    axis the array is treated as one long row (fast, contiguous), and the ``r`` columns at each
    edge, where that wraps into the next row, are then computed exactly. ``out`` and ``tmp``
    are optional buffers of ``a``'s shape (new allocations cost page faults on every call).
    """
    r = len(taps) // 2
    if r == 0:
        if out is None:
            return a.copy()
        np.copyto(out, a)
        return out
    axis = axis % a.ndim
    n = a.shape[axis]
    last = axis == a.ndim - 1
    if last:
        a = np.ascontiguousarray(a)
        flat, length = a.reshape(-1), a.size
    else:
        flat, length = a, n

    def sl(start, stop):
        idx = [slice(None)] * flat.ndim
        idx[0 if last else axis] = slice(start, stop)
        return tuple(idx)

    result = np.empty(a.shape, a.dtype) if out is None else out
    out = result.reshape(flat.shape)
    np.multiply(flat, taps[r], out=out)
    tmp = np.empty(flat.shape, a.dtype) if tmp is None else tmp.reshape(flat.shape)
    for i in range(1, r + 1):
        if length > 2 * i:
            pair = tmp[sl(0, length - 2 * i)]
            np.add(flat[sl(0, length - 2 * i)], flat[sl(2 * i, length)], out=pair)
            pair *= taps[r + i]
            out[sl(i, length - i)] += pair
    out = result
    # Pixels within r of an edge, where a partner lies outside (or in the next row): exactly.
    idx = [slice(None)] * a.ndim
    for j in sorted({*range(min(r, n)), *range(max(n - r, 0), n)}):
        acc = 0
        for t in range(-r, r + 1):
            idx[axis] = min(max(j + t, 0), n - 1)
            acc = acc + taps[r + t] * a[tuple(idx)]
        idx[axis] = j
        out[tuple(idx)] = acc
    return out


def _blur2d(a: np.ndarray, taps: np.ndarray, out: np.ndarray | None = None,
            tmp: np.ndarray | None = None, mid: np.ndarray | None = None) -> np.ndarray:
    """Separable blur of the last two axes (optionally into buffers of ``a``'s shape)."""
    return _conv_axis(_conv_axis(a, taps, -2, out=mid, tmp=tmp), taps, -1, out=out, tmp=tmp)


#: Gaussian quantiles of 65536 equally likely levels: ``_NORMAL[uint16]`` is a normal draw.
_NORMAL = ndi_special_ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)


def _thick_boundaries(cell: np.ndarray, out: np.ndarray | None = None,
                      tmp: np.ndarray | None = None) -> np.ndarray:
    """Pixels with a 4-neighbour of another id: ``find_boundaries(cell, mode="thick")``."""
    wall = np.zeros(cell.shape, bool) if out is None else out
    wall[...] = False
    tmp = np.empty(cell.shape, bool) if tmp is None else tmp
    dy = np.not_equal(cell[1:], cell[:-1], out=tmp[1:])
    wall[1:] |= dy
    wall[:-1] |= dy
    dx = np.not_equal(cell[:, 1:], cell[:, :-1], out=tmp[:, 1:])
    wall[:, 1:] |= dx
    wall[:, :-1] |= dx
    return wall


def _walls(cell: np.ndarray, width: int, out: np.ndarray | None = None,
           tmp: np.ndarray | None = None) -> np.ndarray:
    """Wall pixels ``width`` pixels across (>= 1) between the cells of ``cell``.

    An even width grows :func:`_thick_boundaries` (2 pixels, one on each side of a cell border)
    by ``(width - 2) / 2`` crosses; an odd width grows the one-sided border (the pixel below or
    right of a change of id) by ``(width - 1) / 2`` crosses.

    Examples
    --------
    >>> [_walls(np.array([[1, 1, 1, 2, 2, 2]]), w).astype(int).tolist()[0] for w in (1, 2, 3, 4)]
    [[0, 0, 0, 1, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 0]]
    """
    if width < 1:
        raise ValueError(f"wall width must be at least 1 pixel, got {width}")
    tmp = np.empty(cell.shape, bool) if tmp is None else tmp
    if width % 2 == 0:
        wall = _thick_boundaries(cell, out=out, tmp=tmp)
    else:
        wall = np.zeros(cell.shape, bool) if out is None else out
        wall[...] = False
        wall[1:] |= np.not_equal(cell[1:], cell[:-1], out=tmp[1:])
        wall[:, 1:] |= np.not_equal(cell[:, 1:], cell[:, :-1], out=tmp[:, 1:])
    for _ in range((width - 1) // 2):
        np.copyto(tmp, wall)
        _dilate_cross(tmp, out=wall)
    return wall


def _dilate_cross(mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Binary dilation by the 4-neighbour cross (one iteration)."""
    out = mask.copy() if out is None else out
    np.copyto(out, mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _disc_pixels(cy: np.ndarray, cx: np.ndarray, r: np.ndarray, ny: int, nx: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """All pixels of many discs at once: ``(disc index, flat pixel index)``, clipped to the slice.

    Works row by row: each disc row is one run of pixels, so no pixel outside a disc is visited.
    """
    y0 = np.maximum(np.ceil(cy - r).astype(np.int64), 0)
    y1 = np.minimum(np.floor(cy + r).astype(np.int64) + 1, ny)
    h = np.maximum(y1 - y0, 0)
    disc = np.repeat(np.arange(len(r)), h)
    y = y0[disc] + np.arange(len(disc)) - np.repeat(np.cumsum(h) - h, h)
    half = np.sqrt(np.maximum(r[disc] ** 2 - (y - cy[disc]) ** 2, 0.0))
    xa = np.maximum(np.ceil(cx[disc] - half).astype(np.int64), 0)
    xb = np.minimum(np.floor(cx[disc] + half).astype(np.int64), nx - 1)
    n = np.maximum(xb - xa + 1, 0)
    start = y * nx + xa
    pix = np.repeat(start - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
    return np.repeat(disc, n), pix

