"""Volumes in 16-slice blocks: sections from sub-slices, and blocks rendered side by side in threads.

Rendering works on blocks of slices with per-slice random streams, so a volume of any depth is
made in bounded memory and the same ``(domain, shape, seed)`` always gives the same volume.
Every array belongs to one call (no module-level scratch), so volumes can be made in threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ...progress import progress as progress_bar
from ..volume import Volume
from .acquisition import _Z_TRUNCATE, _acquire, _misalign, _psf, _shift, _smooth_walk
from .geometry import _Geometry, _make_geometry
from .numerics import _gauss_taps
from .params import DOMAINS, DomainParams, domain_params
from .renderer import _Renderer

#: Slices per rendered block (a thread renders whole blocks; memory: a block and its halo).
_BLOCK = 16


def _render_block(rend: _Renderer, z0: int, z1: int, cache: dict, with_cells: bool = True,
                  codes_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Clean image, codes and cell ids of returned slices ``z0:z1`` (float32, uint8, int64).

    ``cache`` keeps rendered sub-slices between consecutive blocks (the z blur's halo). The clean
    image is a scratch buffer of ``rend``, overwritten by the next block. Without a z blur the
    sub-slices of a section are summed as they are rendered (memory: the block and two slices).
    The codes are written into ``codes_out`` (uint8, ``(z1 - z0, Y, X)``) when given.
    """
    p, ny, nx = rend.p, rend.ny, rend.nx
    k = p.z_factor
    ztaps = _gauss_taps(p.psf_sigma[0], truncate=_Z_TRUNCATE) if p.psf_sigma[0] > 0 else np.ones(1, np.float32)
    halo = len(ztaps) // 2
    if halo == 0:
        return _render_sections(rend, z0, z1, with_cells, codes_out)
    subs = range(z0 * k - halo, z1 * k + halo)
    first = subs[0]
    stack = rend.buf("stack", (len(subs), ny, nx))
    centre = {z * k + k // 2: z for z in range(z0, z1)}
    tex: dict[int, tuple] = {}
    codes, cells = {}, {}
    for s in subs:
        want = s in centre
        if s in cache and not want:
            stack[s - first] = cache[s]
            continue
        z = s // k
        if z not in tex:
            tex = {z: rend.textures(z)}
        c, cl = rend.sub_slice(s, *tex[z], want_labels=want, out=stack[s - first])
        if want:
            codes[s], cells[s] = c, cl
    cache.clear()
    cache.update({s: stack[s - first].copy() for s in subs[len(subs) - 2 * halo:]} if halo else {})
    out = rend.buf("clean", (z1 - z0, ny, nx))
    tmp = rend.buf("f1", (ny, nx))
    for i, z in enumerate(range(z0, z1)):
        # Section thickness (the mean of z_factor sub-slices) after the z blur: one weight per
        # sub-slice; sub-slices of equal weight are summed first, then scaled once.
        weight: dict[int, float] = {}
        for s in range(z * k, z * k + k):
            for j, w in enumerate(ztaps):
                weight[s + j - halo] = weight.get(s + j - halo, 0.0) + float(w) / k
        groups: dict[float, list[int]] = {}
        for s, w in weight.items():
            groups.setdefault(round(w, 12), []).append(s - first)
        acc = out[i]
        for n, (w, members) in enumerate(groups.items()):
            part = acc if n == 0 else tmp
            np.copyto(part, stack[members[0]])
            for m in members[1:]:
                part += stack[m]
            part *= np.float32(w)
            if n:
                acc += part
    _psf(rend, out)
    ks = sorted(centre)
    cells_out = np.stack([cells[s] for s in ks]).astype(np.int64) if with_cells else None
    return out, np.stack([codes[s] for s in ks], out=codes_out), cells_out


def _render_sections(rend: _Renderer, z0: int, z1: int, with_cells: bool, codes_out: np.ndarray | None = None):
    """:func:`_render_block` without a z blur: each slice is the mean of its section's sub-slices."""
    p, ny, nx = rend.p, rend.ny, rend.nx
    k = p.z_factor
    out = rend.buf("clean", (z1 - z0, ny, nx))
    sub = rend.buf("sub", (ny, nx))
    codes, cells = [], []
    for i, z in enumerate(range(z0, z1)):
        tex = rend.textures(z)
        for s in range(z * k, z * k + k):
            want = s == z * k + k // 2
            c, cl = rend.sub_slice(s, *tex, want_labels=want, out=out[i] if s == z * k else sub)
            if s > z * k:
                out[i] += sub
            if want:
                codes.append(c)
                cells.append(cl)
        if k > 1:
            out[i] *= np.float32(1.0 / k)
    _psf(rend, out)
    return out, np.stack(codes, out=codes_out), np.stack(cells).astype(np.int64) if with_cells else None


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be three integers (Z, Y, X), got {shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive integers (Z, Y, X), got {shape!r}")
    if min(shape[1:]) < 16:
        raise ValueError(f"slices must be at least 16 x 16 pixels, got {shape[1]} x {shape[2]}")
    return shape


def iter_blocks(domain: str, shape, seed: int = 0, block: int = 16
                ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(z0, image, labels, cells)`` blocks of a synthetic volume in z order.

    The blocks concatenate to exactly what :func:`make_volume` returns, whatever ``block`` is,
    so volumes deeper than memory can be written slice block by slice block.

    Parameters
    ----------
    domain : {"fibsem", "snemi"}
        Which twin.
    shape : tuple of int
        ``(Z, Y, X)`` of the whole volume.
    seed : int
        Seed; the same ``(domain, shape, seed)`` gives the same volume.
    block : int
        Slices per block.

    Yields
    ------
    z0 : int
        Index of the block's first slice.
    image : ndarray of uint8, (B, Y, X)
    labels : ndarray of uint8, (B, Y, X)
        Codes 1-4 (no 0: every pixel is labelled).
    cells : ndarray of int64, (B, Y, X)
        Cell (neurite) id of every pixel, for instance metrics.
    """
    return _blocks(domain, shape, seed, block, with_cells=True)


@dataclass(frozen=True)
class _Plan:
    """What every slice of one volume shares: parameters, geometry, drift and misalignment."""

    p: DomainParams
    shape: tuple[int, int, int]
    seed: int
    geo: _Geometry
    gain: np.ndarray
    offset: np.ndarray
    shifts: np.ndarray


def _plan(domain: str, shape, seed: int) -> _Plan:
    p = domain_params(domain)
    shape = _check_shape(shape)
    nz, ny, nx = shape
    rng = np.random.default_rng([int(seed), DOMAINS.index(domain), nz, ny, nx])
    geo = _make_geometry(p, shape, rng)
    offset0, gain0 = p.contrast
    gain = gain0 * (1.0 + _smooth_walk(rng, nz, p.drift * 2)) if p.drift else np.full(nz, gain0)
    offset = offset0 + _smooth_walk(rng, nz, p.drift) if p.drift else np.full(nz, offset0)
    return _Plan(p, shape, int(seed), geo, gain, offset, _misalign(p, rng, nz))


def _render_range(plan: _Plan, starts, block: int, with_cells: bool,
                  out: tuple[np.ndarray, np.ndarray] | None = None):
    """Yield ``(z0, image, codes, cells)`` for the blocks starting at ``starts`` (increasing).

    A block's pixels depend only on the plan and its slices, never on which blocks were
    rendered before it (with a z blur, the halo of sub-slices a block shares with the one before
    is rendered again after a gap), so disjoint ranges may be rendered by different threads,
    each with its own renderer. With ``out`` (uint8 image and labels of the whole volume) every
    block is written in place there and the yielded arrays are views of it.
    """
    p, nz = plan.p, plan.shape[0]
    rend = _Renderer(p, plan.geo, plan.shape, plan.seed)
    rend.keep_cells = with_cells
    cache: dict = {}
    for z0 in starts:
        z1 = min(z0 + block, nz)
        dst = (None, None) if out is None else (out[0][z0:z1], out[1][z0:z1])
        clean, codes, cells = _render_block(rend, z0, z1, cache, with_cells, codes_out=dst[1])
        image = _acquire(p, clean, z0, plan.gain, plan.offset, plan.seed, out_u8=dst[0])
        arrays = (image, codes, cells) if with_cells else (image, codes)
        for i in range(z1 - z0):
            dy, dx = plan.shifts[z0 + i]
            if dy or dx:
                for a in arrays:
                    a[i] = _shift(a[i], dy, dx)
        yield z0, image, codes, cells


def _blocks(domain: str, shape, seed: int, block: int, with_cells: bool):
    """:func:`iter_blocks`; without ``with_cells`` the cells are not assembled (None)."""
    plan = _plan(domain, shape, seed)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    return _render_range(plan, range(0, plan.shape[0], block), block, with_cells)


def default_workers() -> int:
    """Threads :func:`make_volume` renders with by default: the CPUs this process may use, at
    most 4 (numpy releases the GIL in the heavy array operations, so threads share the work).

    Examples
    --------
    >>> 1 <= default_workers() <= 4
    True
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        usable = os.cpu_count() or 1
    return max(1, min(usable, 4))


#: bytes of rendering scratch per slice pixel and thread (a block of float32 sub-slices and the
#: renderer's buffers: about 150 MB for 1024 x 1024 target slices), an upper estimate
_SCRATCH_PER_PIXEL = 160


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate without swapping, or None where unknown.

    Linux's ``MemAvailable`` (``/proc/meminfo``: free memory plus the page cache that can be
    dropped) where it exists, else ``os.sysconf("SC_AVPHYS_PAGES")`` (free pages only, so a
    lower bound), else None (the check is skipped: e.g. on Windows).

    Examples
    --------
    >>> m = available_memory()
    >>> m is None or m > 0
    True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def volume_bytes(shape, *, with_cells: bool = False, workers: int | None = None) -> int:
    """About how many bytes :func:`make_volume` allocates for ``shape``: image and labels (uint8),
    the cell ids (int64) with ``with_cells``, and each thread's scratch for a block of slices.

    Examples
    --------
    >>> volume_bytes((16, 1024, 1024), workers=1) // 2**20
    192
    """
    nz, ny, nx = (int(s) for s in shape)
    workers = default_workers() if workers is None else int(workers)
    per_voxel = 2 + (8 if with_cells else 0)
    threads = max(1, min(workers, -(-nz // _BLOCK)))
    return nz * ny * nx * per_voxel + threads * _SCRATCH_PER_PIXEL * ny * nx


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def check_memory(domain: str, shape, name: str = "shape", *, with_cells: bool = False,
                 workers: int | None = None) -> None:
    """Raise ValueError naming ``name`` if a volume of ``shape`` needs more memory than is
    available (:func:`volume_bytes` against :func:`available_memory`; skipped where unknown).

    Examples
    --------
    >>> check_memory("fibsem", (10**6, 10**4, 10**4), "--shape")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --shape 1000000 10000 10000: a fibsem volume of 1000000 x 10000 x 10000 voxels needs about 200.0 TB of memory ..., more than the ... available; make it smaller
    """
    try:
        given = " ".join(map(str, shape)) if name.startswith("--") else repr(tuple(shape))
    except TypeError:
        given = repr(shape)
    subject = f"{name} {given}"
    try:
        shape = _check_shape(shape)
    except ValueError as err:  # the shape check's own message, naming the flag or argument
        raise ValueError(f"{subject}: {err}") from None
    need, have = volume_bytes(shape, with_cells=with_cells, workers=workers), available_memory()
    if have is not None and need > have:
        what = "image and labels, 1 byte a voxel each" + (", cell ids 8" if with_cells else "")
        raise ValueError(f"{subject}: a {domain} volume of {' x '.join(map(str, shape))} voxels needs about "
                         f"{_size(need)} of memory ({what}, and the renderers' scratch), more than the "
                         f"{_size(have)} available; make it smaller")


def make_volume(domain: str, shape=(32, 256, 256), seed: int = 0, *, with_cells: bool = False,
                progress: bool = False, workers: int | None = None) -> Volume:
    """Generate a labelled synthetic EM volume of one domain.

    Parameters
    ----------
    domain : {"fibsem", "snemi"}
        ``"fibsem"``: the source twin (isotropic, codes 1-4). ``"snemi"``: the target twin
        (anisotropic, codes 1-3, no glia; its labels are for evaluation only).
    shape : tuple of int
        ``(Z, Y, X)``; slices at least 16 x 16.
    seed : int
        Random seed; the same arguments always give the same volume.
    with_cells : bool
        Also return the cell (neurite) ids in ``Volume.extra["cells"]``.
    progress : bool
        Show a progress bar over slice blocks.
    workers : int, optional
        Threads rendering slice blocks side by side (default :func:`default_workers`). The
        volume is the same for any number (each thread renders its own run of blocks, and a
        block depends only on its slices); 1 renders in this thread. Each thread keeps its own
        scratch buffers (a block of float32 sub-slices: about 150 MB for 1024 x 1024 target
        slices), and with a volume of one 16-slice block there is nothing to share.

    Returns
    -------
    Volume
        ``image`` uint8, ``labels`` uint8, ``voxel_size`` in nm and ``name``.

    Raises
    ------
    ValueError
        A bad shape or domain, or a volume larger than the memory available
        (:func:`check_memory`, before anything is allocated).

    Examples
    --------
    >>> v = make_volume("snemi", (3, 48, 48), seed=1)
    >>> v.voxel_size
    (30.0, 6.0, 6.0)
    """
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    domain_params(domain)  # an unknown domain is named before the size
    check_memory(domain, shape, "shape", with_cells=with_cells, workers=workers)
    plan = _plan(domain, shape, seed)
    shape = plan.shape
    image = np.empty(shape, np.uint8)
    labels = np.empty(shape, np.uint8)
    cells = np.empty(shape, np.int64) if with_cells else None
    starts = list(range(0, shape[0], _BLOCK))
    runs = [r.tolist() for r in np.array_split(starts, min(workers, len(starts)))]  # consecutive blocks each
    stop = threading.Event()  # set when one run fails or the caller is interrupted
    with progress_bar(None, total=len(starts), desc=f"synth {domain}", unit="block", enabled=progress) as bar:

        def render(run: list[int]) -> None:
            for z0, _, _, cel in _render_range(plan, run, _BLOCK, with_cells, out=(image, labels)):
                if cells is not None:  # image and labels are written in place
                    cells[z0:z0 + len(cel)] = cel
                bar.update(1)
                if stop.is_set():
                    return

        if len(runs) == 1:
            render(runs[0])
        else:
            pool = ThreadPoolExecutor(len(runs))
            try:
                for done in [pool.submit(render, run) for run in runs]:
                    done.result()  # re-raises a worker's error
            finally:  # on an error or Ctrl-C the other runs stop after their current block
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
    extra = {"cells": cells} if with_cells else {}
    return Volume(image=image, labels=labels, voxel_size=domain_params(domain).voxel_size,
                  name=f"synthetic-{domain}-seed{seed}", extra=extra)
