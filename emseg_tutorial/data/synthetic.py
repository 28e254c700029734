"""Synthetic twins of the paper's two EM volumes, generated from a seed and a shape.

The paper trains on a FIBSEM volume of *Drosophila* neuropil (10 nm isotropic voxels, labels
boundary / cytoplasm / mitochondria / glia) and adapts to SNEMI3D (mouse cortex, serial-section
SEM, 6 x 6 x 30 nm voxels, no labels used). Neither is needed to follow the book: this module
draws volumes that share the properties the paper's methods depend on.

How a volume is made
--------------------
1. **Geometry.** Neurites are tubes that run roughly along z with a random tilt and a smooth
   wiggle. On every (isotropic) sub-slice each neurite is a seed point; the cells of that
   sub-slice are the Voronoi regions of the seeds, bent by a smooth displacement field so that
   walls curve (a pixel ``p`` belongs to the seed nearest to ``p + warp(p)``). Some domains add
   a few large neurites (dendrites) drawn as discs over the Voronoi fill. Mitochondria are
   ellipsoids elongated along their neurite; glia are a subset of cells.
2. **Labels.** Boundary (code 1) marks every pixel with a 4-neighbour of another cell (what
   ``skimage.segmentation.find_boundaries(mode="thick")`` marks: a wall is 2 pixels wide, 20 nm
   at 10 nm pixels; the target grows it to 4 pixels, 24 nm at 6 nm), cytoplasm 2, mitochondria
   3 (kept one pixel away from walls), glia 4.
3. **Image.** Each class gets an intensity and its own texture; walls are drawn as dark
   membranes. What makes real EM hard is drawn into the image only (labels never change): cells
   stain unevenly (a per-cell offset and slow shading), membranes fade along stretches until
   some look broken, vesicles are dark dots inside cells and mitochondria have a dark rim (both
   look like bits of wall). Then the acquisition is simulated: point-spread blur and noise for FIBSEM;
   section thickness (the mean of ``z_factor`` isotropic sub-slices, so oblique walls become
   wide and faint), a gamma curve, lower contrast, slice-to-slice drift of brightness and
   contrast, stronger noise and occasional slice misalignment for SNEMI3D.

Difficulty is fixed here
------------------------
The two parameter sets :data:`FIBSEM` and :data:`SNEMI` fix the twins' difficulty; later
chapters must not change them to reach a number. Both twins are the same kind of tissue at
their own pixel size: every tissue length (cell spacing, wiggle, warp, mitochondria, vesicles,
the wavelengths of the wiggles and of the warp) is the same in nm, so target structures span
10 / 6 = 1.7 times the pixels of the source's (a test checks the neurite diameters). The domain
gap is structural, not only an intensity shift: the target has large dendrites among its
neurites, no glia, thicker (in pixels) and section-blurred oblique membranes, a nonlinear
intensity curve, per-slice drift and misalignment. Histogram matching removes only part of it
(chapter 6 measures how much). The source is made hard by what real EM shows (faint and broken
membranes, wall-like vesicles and mitochondrial rims, uneven staining, noise), never by wrong
labels.

Documented class fractions (checked by the tests on 12 x 128 x 128 volumes, where a few large
cells make them spread; a larger volume lies nearer the middle of each range): source boundary
8-16 % (about 11.5 %, the paper says about 10 %), mitochondria 2-10 %, glia 2-40 % (about
15 %), cytoplasm the rest; target boundary 7-18 % (about 12 %: close to the source's, as in
real pairs), mitochondria about 3 %, no glia.

Rendering works on blocks of slices with per-slice random streams, so a volume of any depth is
made in bounded memory and the same ``(domain, shape, seed)`` always gives the same volume.

How it is fast
--------------
Cell ids are computed exactly on a grid of nodes every 4 pixels (nearest seed among a short
candidate list per tile of nodes, found once per group of sub-slices with a k-d tree); a 4 x 4
block whose corner nodes agree is filled at once (Voronoi cells are convex), and only the pixels
of the other blocks compare the seeds of their corners. Mitochondria and dendrites are drawn as
batches of discs, walls are neighbour comparisons, blurs are small separable kernels applied in
place, and scratch arrays are reused between sub-slices. The textures are windows, at a random
offset per slice, of fields made once per volume; cytoplasm and glia are one lookup in per-cell
tables (intensity with staining, texture gain, label code); the membrane strength is one lookup
by pixel kind (wall, beside a wall, elsewhere) before the microscope's blur; a z blur, where a
domain has one, stops at 1.5 sigma (one sub-slice of halo). ``benchmarks/bench_twins.py`` times it against version 1 in one process.
Every array belongs to one call (no module-level scratch), so volumes can be made in threads.

Versions
--------
:data:`TWIN_VERSION` names the generator: the same ``(domain, shape, seed)`` gives the same
volume within a version, and caches (:func:`~emseg_tutorial.data.sources.load_domain`) are keyed
on it. Version 1 (before ``TWIN_VERSION`` existed) filled each sub-slice with a Euclidean
distance transform from pixel-rounded seeds and warped it by rounded displacements. Version 2
draws the same geometry (neurites, dendrites, mitochondria, glia) from a seed, but: cells are
exact Voronoi regions of the unrounded seeds in displaced coordinates (seeds outside the slice
count too), mitochondria are moved by the local displacement, textures come from uniform noise
shared by the sub-slices of a section (scaled to the same strength), the acquisition noise is
drawn from a Gaussian table, and the blur kernels stop at 3 sigma (the membrane one at 2). Pixel
values differ from version 1; class fractions, intensities per class and the look stay within
about a point of it, and walls move a little more smoothly between source slices. Version 3
makes the twins physically consistent and harder: target tissue lengths are the source's in nm
(neurites 2.5 times larger in target pixels than in version 2), target walls are labelled 4
pixels wide, the source has more noise and both get per-cell staining, faint membranes,
vesicles and mitochondrial rims (see "How a volume is made"); textures come from a per-volume
bank, the xy blur kernel is shorter, the rounding is folded into the noise, membranes are
drawn at two levels (on and beside the wall) and the source has no z blur (its xy blur and
10 nm sampling already soften oblique walls; the z blur cost two extra sub-slices per block).

Examples
--------
>>> vol = make_volume("fibsem", (4, 64, 64), seed=0)
>>> vol.image.shape, vol.image.dtype.name, sorted(set(vol.labels.ravel().tolist()))
((4, 64, 64), 'uint8', [1, 2, 3, 4])
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from scipy.special import ndtri as ndi_special_ndtri

from ..labels import BOUNDARY, CYTOPLASM, GLIA, MITOCHONDRIA
from ..progress import progress as progress_bar
from .volume import Volume

DOMAINS = ("fibsem", "snemi")

#: Version of the generator: volumes are the same for the same ``(domain, shape, seed)`` within
#: a version (see "Versions" above); 1 was the generator before this constant existed.
TWIN_VERSION = 3

#: Slices per rendered block (a thread renders whole blocks; memory: a block and its halo).
_BLOCK = 16


@dataclass(frozen=True)
class DomainParams:
    """Everything that makes one synthetic domain what it is.

    Lengths are in pixels of the isotropic sub-slice grid (the xy pixel size).

    Attributes
    ----------
    name : str
        Domain name.
    voxel_size : tuple of float
        ``(z, y, x)`` in nm of the volume that is returned.
    z_factor : int
        Isotropic sub-slices per returned slice (section thickness / xy pixel).
    cell_spacing : float
        Mean distance between neighbouring neurite seeds (sets the cell size).
    tilt : float
        Standard deviation of a neurite's xy drift per sub-slice (0.5 is about 27 degrees).
    wiggle : float
        Amplitude of a neurite's smooth xy meander.
    warp : float
        Amplitude of the smooth displacement field that bends walls.
    dendrite_fraction : float
        Fraction of the area covered by large neurites drawn as discs (0 for none).
    dendrite_radius : tuple of float
        Range of dendrite radii.
    glia_fraction : float
        Probability that a (non-dendrite) cell is a glial cell.
    mito_per_cell : float
        Expected mitochondria per neurite over the volume depth.
    mito_radius : tuple of float
        Range of mitochondrion radii across the neurite.
    mito_length : tuple of float
        Range of mitochondrion half-lengths along the neurite.
    intensity : dict
        Mean intensity in [0, 1] of ``membrane``, ``cytoplasm``, ``mito``, ``glia``.
    texture : dict
        Amplitude of the fine texture of ``cytoplasm`` (glia share it: they differ by intensity)
        and of ``mito``.
    psf_sigma : tuple of float
        ``(z, y, x)`` Gaussian blur of the microscope, in sub-slices / pixels.
    noise : float
        Standard deviation of the additive Gaussian noise.
    gamma : float
        Exponent of the intensity curve applied after blur.
    contrast : tuple of float
        ``(offset, gain)``: ``image = offset + gain * image ** gamma``.
    drift : float
        Size of the slice-to-slice random walk of gain and offset.
    misalign_prob : float
        Probability that a returned slice is shifted against its neighbours.
    misalign_max : int
        Largest shift in pixels of a misaligned slice.
    wall_width : int
        Width in pixels of a labelled wall: 2 is ``find_boundaries(mode="thick")``, 4 grows it by
        one pixel on each side (a membrane of about 20 nm at 6 nm pixels).
    shading : float
        Amplitude of the slow shading across the slice (uneven staining).
    cell_stain : float
        Standard deviation of a per-cell intensity offset (cells stain differently).
    membrane_fade : float
        Largest fraction of a membrane's darkness lost along faint stretches (0: every wall fully
        dark; 0.8: some stretches keep a fifth of it and look broken). Image only; labels stay.
    vesicle_density : float
        Expected vesicles per cell per sub-slice in the cells that hold vesicles (a third).
    vesicle_radius : tuple of float
        Range of vesicle radii (pixels); vesicles are dark dots inside cytoplasm (labelled
        cytoplasm), easy to mistake for membrane fragments.
    mito_rim : float
        Darkness of a mitochondrion's outer membrane, 0 to 1 of the way to the membrane
        intensity: a dark ring that looks like a cell wall.
    """

    name: str
    voxel_size: tuple[float, float, float]
    z_factor: int
    cell_spacing: float
    tilt: float
    wiggle: float
    warp: float
    dendrite_fraction: float
    dendrite_radius: tuple[float, float]
    glia_fraction: float
    mito_per_cell: float
    mito_radius: tuple[float, float]
    mito_length: tuple[float, float]
    intensity: dict = field(default_factory=dict)
    texture: dict = field(default_factory=dict)
    psf_sigma: tuple[float, float, float] = (0.8, 0.8, 0.8)
    noise: float = 0.05
    gamma: float = 1.0
    contrast: tuple[float, float] = (0.0, 1.0)
    drift: float = 0.0
    misalign_prob: float = 0.0
    misalign_max: int = 0
    wall_width: int = 2
    shading: float = 0.06
    cell_stain: float = 0.0
    membrane_fade: float = 0.0
    vesicle_density: float = 0.0
    vesicle_radius: tuple[float, float] = (1.5, 2.5)
    mito_rim: float = 0.0


#: Source twin: FIBSEM of fly neuropil, 10 nm isotropic, four classes, stable across slices.
FIBSEM = DomainParams(
    name="fibsem",
    voxel_size=(10.0, 10.0, 10.0),
    z_factor=1,
    cell_spacing=32.0,
    tilt=0.35,
    wiggle=4.0,
    warp=4.0,
    dendrite_fraction=0.0,
    dendrite_radius=(0.0, 0.0),
    glia_fraction=0.13,
    mito_per_cell=1.8,
    mito_radius=(4.0, 7.5),
    mito_length=(10.0, 24.0),
    intensity={"membrane": 0.20, "cytoplasm": 0.64, "mito": 0.36, "glia": 0.50},
    texture={"cytoplasm": 0.045, "mito": 0.09},
    psf_sigma=(0.0, 0.7, 0.7),
    noise=0.08,
    wall_width=2,
    shading=0.10,
    cell_stain=0.06,
    membrane_fade=0.8,
    vesicle_density=0.06,
    vesicle_radius=(1.5, 2.5),
    mito_rim=0.6,
)

#: Target twin: serial-section SEM of mouse cortex, 6 x 6 x 30 nm, no glia, drifting slices.
#: Tissue lengths are the source's in nm (so 10 / 6 times as many pixels); the acquisition
#: (section thickness, gamma, contrast, blur, noise, drift, misalignment) is its own.
SNEMI = DomainParams(
    name="snemi",
    voxel_size=(30.0, 6.0, 6.0),
    z_factor=5,
    cell_spacing=32.0 * 10 / 6,
    tilt=0.55,
    wiggle=4.0 * 10 / 6,
    warp=4.0 * 10 / 6,
    dendrite_fraction=0.22,
    dendrite_radius=(55.0, 100.0),
    glia_fraction=0.0,
    mito_per_cell=1.2,
    mito_radius=(6.5, 12.5),
    mito_length=(17.0, 40.0),
    intensity={"membrane": 0.10, "cytoplasm": 0.72, "mito": 0.42, "glia": 0.72},
    texture={"cytoplasm": 0.06, "mito": 0.05},
    psf_sigma=(0.0, 1.2, 1.2),
    noise=0.07,
    gamma=1.6,
    contrast=(0.12, 0.70),
    drift=0.035,
    misalign_prob=0.1,
    misalign_max=6,
    wall_width=4,
    shading=0.06,
    cell_stain=0.05,
    membrane_fade=0.5,
    vesicle_density=0.036,
    vesicle_radius=(2.5, 4.2),
    mito_rim=0.6,
)

PARAMS: dict[str, DomainParams] = {"fibsem": FIBSEM, "snemi": SNEMI}


def domain_params(domain: str) -> DomainParams:
    """Return the parameters of ``domain`` (``"fibsem"`` or ``"snemi"``)."""
    try:
        return PARAMS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}") from None


# --------------------------------------------------------------------------- geometry


@dataclass
class _Geometry:
    """Seeds and objects of one volume, in sub-slice coordinates; small arrays only."""

    origin: np.ndarray  # (N, 2) seed position at sub-slice 0
    velocity: np.ndarray  # (N, 2) drift per sub-slice
    wiggle_amp: np.ndarray  # (N, 2, K)
    wiggle_freq: np.ndarray  # (N, K)
    wiggle_phase: np.ndarray  # (N, 2, K)
    radius: np.ndarray  # (N,) > 0 for dendrites drawn as discs, 0 for Voronoi cells
    glia: np.ndarray  # (N,) bool
    mito: np.ndarray  # (M, 7): cell, z-centre, half-length, radius, dy, dx, unused
    warp_k: np.ndarray  # (W, 3) wave vectors of the displacement field
    warp_amp: np.ndarray  # (W, 2)
    warp_phase: np.ndarray  # (W,)
    tex_k: np.ndarray  # (T, 3) wave vectors of the low-frequency shading
    tex_amp: np.ndarray  # (T,)
    tex_phase: np.ndarray  # (T,)
    stain: np.ndarray  # (N,) float32 intensity offset of each cell
    vesicle: np.ndarray  # (V, 5): cell, z-centre, radius, dy, dx

    def seeds(self, s: float) -> np.ndarray:
        """Seed positions ``(N, 2)`` at sub-slice ``s``."""
        wig = (self.wiggle_amp * np.sin(self.wiggle_freq[:, None, :] * s + self.wiggle_phase)).sum(-1)
        return self.origin + self.velocity * s + wig


def _make_geometry(p: DomainParams, shape: tuple[int, int, int], rng: np.random.Generator) -> _Geometry:
    nz = shape[0] * p.z_factor
    ny, nx = shape[1:]
    # Seeds start in an area large enough that drift over the depth never empties the slice.
    margin = 3.0 * p.tilt * nz / 2 + 2 * p.cell_spacing + p.wiggle
    lo = np.array([-margin, -margin])
    hi = np.array([ny + margin, nx + margin])
    area = float(np.prod(hi - lo))
    n = max(4, int(round(area / p.cell_spacing**2)))
    velocity = rng.normal(0.0, p.tilt, (n, 2))
    # Positions are drawn for the middle sub-slice, so drift spreads both ways.
    origin = rng.uniform(lo, hi, (n, 2)) - velocity * nz / 2
    k = 3
    wiggle_amp = rng.normal(0.0, p.wiggle / np.sqrt(k), (n, 2, k))
    scale = 10.0 / p.voxel_size[2]  # lengths below are for 10 nm pixels: the same in nm
    wiggle_freq = rng.uniform(2 * np.pi / 120, 2 * np.pi / 30, (n, k)) / scale
    wiggle_phase = rng.uniform(0, 2 * np.pi, (n, 2, k))

    radius = np.zeros(n)
    if p.dendrite_fraction > 0:
        mean_r2 = np.mean(np.square(p.dendrite_radius))
        n_dend = max(1, int(round(p.dendrite_fraction * area / (np.pi * mean_r2))))
        radius[rng.choice(n, size=min(n_dend, n), replace=False)] = rng.uniform(*p.dendrite_radius, n_dend)
    glia = (rng.random(n) < p.glia_fraction) & (radius == 0)

    n_mito = rng.poisson(p.mito_per_cell * n)
    mito = np.zeros((n_mito, 7))
    if n_mito:
        cell = rng.integers(0, n, n_mito)
        cell = np.where(glia[cell], rng.integers(0, n, n_mito), cell)  # fewer mitochondria in glia
        mito[:, 0] = cell
        mito[:, 1] = rng.uniform(-20, nz + 20, n_mito)
        mito[:, 2] = rng.uniform(*p.mito_length, n_mito)
        mito[:, 3] = rng.uniform(*p.mito_radius, n_mito)
        # Offset from the neurite axis, smaller in thin neurites.
        room = np.maximum(np.where(radius[cell] > 0, radius[cell], p.cell_spacing / 2) - mito[:, 3] - 3, 0)
        angle = rng.uniform(0, 2 * np.pi, n_mito)
        off = rng.uniform(0, 0.7, n_mito) * room
        mito[:, 4] = off * np.sin(angle)
        mito[:, 5] = off * np.cos(angle)

    def waves(count: int, wavelength: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        direction = rng.normal(size=(count, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        length = rng.uniform(*wavelength, count)
        return direction * (2 * np.pi / length)[:, None], rng.uniform(0, 2 * np.pi, count)

    warp_k, warp_phase = waves(8, (40.0 * scale, 120.0 * scale))
    warp_amp = rng.normal(0.0, p.warp / np.sqrt(8 / 2), (8, 2))
    tex_k, tex_phase = waves(6, (60.0 * scale, 250.0 * scale))
    tex_amp = rng.normal(0.0, 1.0 / np.sqrt(6), 6)
    stain = rng.normal(0.0, p.cell_stain, n).astype(np.float32) if p.cell_stain else np.zeros(n, np.float32)
    # Vesicles: small spheres in a third of the cells (boutons), off the neurite axis.
    vesicle = np.zeros((0, 5))
    if p.vesicle_density > 0:
        holders = np.flatnonzero((rng.random(n) < 1 / 3) & ~glia)
        n_ves = rng.poisson(p.vesicle_density * len(holders) * (nz + 10))
        vesicle = np.zeros((n_ves, 5))
        vesicle[:, 0] = rng.choice(holders, n_ves) if len(holders) else 0
        vesicle[:, 1] = rng.uniform(-5, nz + 5, n_ves)
        vesicle[:, 2] = rng.uniform(*p.vesicle_radius, n_ves)
        cell = vesicle[:, 0].astype(np.int64)
        room = np.maximum(np.where(radius[cell] > 0, radius[cell], p.cell_spacing / 2) - 3, 1)
        angle = rng.uniform(0, 2 * np.pi, n_ves)
        off = np.sqrt(rng.uniform(0, 0.6, n_ves)) * room
        vesicle[:, 3] = off * np.sin(angle)
        vesicle[:, 4] = off * np.cos(angle)
    return _Geometry(origin, velocity, wiggle_amp, wiggle_freq, wiggle_phase, radius, glia, mito,
                     warp_k, warp_amp, warp_phase, tex_k, tex_amp, tex_phase, stain, vesicle)


# --------------------------------------------------------------------------- one sub-slice

#: Node spacing (pixels) of the coarse grid on which cell ids are computed exactly.
_G = 4
#: Nodes per side of the tiles that share one list of candidate seeds.
_TILE = 4
#: Sub-slices (at least) that share one set of candidate lists.
_GROUP = 8


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
_FINE_TAPS = np.array([1, 4, 6, 4, 1], np.float32) / 16  # binomial, variance 1 (sigma 1.0)
_GRAIN_TAPS = np.array([0.18, 0.64, 0.18], np.float32)  # variance 0.36 (sigma 0.6)
# Scales so that the textures keep the standard deviation of version 1's Gaussian-filtered noise.
_FINE_GAIN = 2.5 * float(np.sum(_gauss_taps(1.0) ** 2) / np.sum(_FINE_TAPS ** 2))
_GRAIN_GAIN = 1.6 * float(np.sum(_gauss_taps(0.6) ** 2) / np.sum(_GRAIN_TAPS ** 2))
#: The microscope's blur kernels stop at this many sigmas in xy (5 taps for sigma 0.9) and in z
#: (3 taps for sigma 0.8: one sub-slice of halo each side).
_PSF_TRUNCATE = 2.0
_Z_TRUNCATE = 1.5
#: Texture fields are this many pixels larger than a slice: the range of the per-slice offsets.
_BANK_MARGIN = 32


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 draws, several times faster than ``rng.standard_normal``."""
    n = int(np.prod(shape))
    return _NORMAL[np.frombuffer(rng.bytes(2 * n), np.uint16)].reshape(shape)


#: Membrane strength by pixel kind: 0 away from walls, on a 4-neighbour of a wall, on a wall
#: (what a 3-tap Gaussian of sigma 0.7 over the wall mask, times 1.6 and capped at 1, gives on
#: and beside a 2-pixel wall; the microscope's blur smooths it afterwards).
_MEMBRANE_LEVELS = np.array([0.0, 0.32, 1.0], np.float32)


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


class _Renderer:
    """Renders sub-slices of one volume: the per-volume set-up is done once."""

    def __init__(self, p: DomainParams, geo: _Geometry, shape: tuple[int, int, int], seed: int):
        self.p, self.geo, self.seed = p, geo, seed
        _, self.ny, self.nx = shape
        g, t = _G, _TILE
        # Node grid covering the slice, padded to whole tiles.
        self.nby = -(-self.ny // g)
        self.nbx = -(-self.nx // g)
        nyn = -(-(self.nby + 1) // t) * t
        nxn = -(-(self.nbx + 1) // t) * t
        self.node_y = np.arange(nyn, dtype=np.float64) * g
        self.node_x = np.arange(nxn, dtype=np.float64) * g
        self.ys = np.arange(self.ny, dtype=np.float64)
        self.xs = np.arange(self.nx, dtype=np.float64)
        self.small = np.flatnonzero(geo.radius == 0)
        self.dend = np.flatnonzero(geo.radius > 0)
        self.small32 = self.small.astype(np.int32)
        self.dmax = float(np.abs(geo.warp_amp).sum(0).max())  # bound on the displacement
        # Bilinear weights of the g x g pixels of a block from its 4 corner nodes (00, 01, 10, 11).
        u = np.arange(g) / g
        wy, wx = np.meshgrid(u, u, indexing="ij")
        self.weights = np.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx],
                                -1).reshape(g * g, 4)
        self._cand = None
        self._k = 16
        self._buffers: dict = {}
        self._textures: tuple | None = None
        self.keep_cells = True  # False: cell ids live in a scratch buffer (not returned by blocks)
        # Per-cell tables: intensity (class mean plus staining) and label code.
        it = p.intensity
        self.cell_base = np.where(geo.glia, it["glia"], it["cytoplasm"]).astype(np.float32) + geo.stain
        self.cell_code = np.where(geo.glia, GLIA, CYTOPLASM).astype(np.uint8)

    def buf(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A scratch array kept between calls: fresh large arrays cost page faults every time."""
        a = self._buffers.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._buffers[name] = np.empty(shape, dtype)
        return a

    # -- cell ids -----------------------------------------------------------------------
    def _tile_view(self, a: np.ndarray) -> np.ndarray:
        """Node array ``(NY, NX)`` as ``(tiles, nodes per tile)``."""
        t = _TILE
        nyn, nxn = a.shape
        return a.reshape(nyn // t, t, nxn // t, t).transpose(0, 2, 1, 3).reshape(-1, t * t)

    def _group(self, s: int) -> int:
        """Index of the group of sub-slices that share candidate lists (a section, at least 4)."""
        return s // max(self.p.z_factor, _GROUP)

    def _candidates(self, grp: int):
        """Candidate seeds of every node tile, valid for all sub-slices of group ``grp``.

        With ``c`` a tile's centre and ``rad`` its radius at the group's middle sub-slice, ``d1``
        the distance from ``c`` to the nearest seed there, ``dq`` how far displaced nodes move and
        ``m_j`` how far seed ``j`` moves within the group, the nearest seed of any node of the tile
        at any sub-slice of the group is within ``2 (rad + dq) + d1 + m_1 + m_j`` of ``c``. So
        the lists are exact, and the cell ids do not depend on how sub-slices are grouped.
        Returns the tile centres, candidate lists and their validity, and the node displacements
        of the group's sub-slices.
        """
        if self._cand is not None and self._cand[0] == grp:
            return self._cand[1]
        geo, n = self.geo, max(self.p.z_factor, _GROUP)
        subs = range(grp * n, grp * n + n)
        sc = grp * n + n // 2
        disp = {s: _wave_grid(geo.warp_k, geo.warp_phase, geo.warp_amp, s, self.node_y, self.node_x)
                for s in subs}
        d = disp[sc] if sc in disp else _wave_grid(geo.warp_k, geo.warp_phase, geo.warp_amp, sc,
                                                   self.node_y, self.node_x)
        dq = max(float(np.sqrt(((disp[s] - d) ** 2).sum(0)).max()) for s in subs)
        ty = self._tile_view(self.node_y[:, None] + d[0])
        tx = self._tile_view(self.node_x[None, :] + d[1])
        cy, cx = ty.mean(1), tx.mean(1)
        rad = np.sqrt(((ty - cy[:, None]) ** 2 + (tx - cx[:, None]) ** 2).max(1))
        if not len(self.small):
            cand = (cy, cx, np.zeros((len(cy), 0), np.int64), np.zeros((len(cy), 0), bool), disp,
                    np.arange(len(cy)), np.zeros(0, np.int64))
            self._cand = (grp, cand)
            return cand
        sp = geo.seeds(sc)[self.small]
        move = np.max([np.sqrt(((geo.seeds(s)[self.small] - sp) ** 2).sum(1)) for s in subs], 0)
        tree = cKDTree(sp)
        centres = np.stack([cy, cx], 1)
        kk = min(self._k, len(sp))
        slack = float(move.max())
        dist, idx = tree.query(centres, k=kk)
        dist, idx = dist.reshape(len(cy), kk), idx.reshape(len(cy), kk)
        need = dist[:, 0] + 2 * (rad + dq) + move[idx[:, 0]]
        short = np.flatnonzero(dist[:, -1] <= need + slack)
        while len(short) and kk < len(sp):  # the few tiles whose list may be too short
            kk = min(2 * kk, len(sp))
            d2, i2 = tree.query(centres[short], k=kk)
            dist = np.pad(dist, ((0, 0), (0, kk - dist.shape[1])), constant_values=np.inf)
            idx = np.pad(idx, ((0, 0), (0, kk - idx.shape[1])))
            dist[short], idx[short] = d2.reshape(len(short), kk), i2.reshape(len(short), kk)
            short = short[dist[short, -1] <= need[short] + slack]
        keep = dist - move[idx] <= need[:, None]
        self._k = max(8, int(np.percentile(keep.sum(1), 95)) + 4)  # initial list length next time
        # Valid candidates first, so the lists can be cut at the longest one.
        order = np.argsort(~keep, axis=1, kind="stable")
        keep = np.take_along_axis(keep, order, 1)
        idx = np.take_along_axis(idx, order, 1)
        count = keep.sum(1)
        kmax = int(count.max())
        perm = np.argsort(-count, kind="stable")
        longer = (count[:, None] > np.arange(kmax)).sum(0)  # tiles with more than j candidates
        cand = (cy, cx, idx[:, :kmax], keep[:, :kmax], disp, perm, longer)
        self._cand = (grp, cand)
        return cand

    def _nodes(self, s: int, seeds: np.ndarray):
        """Displaced node positions, nearest ordinary seed and label (with dendrites) of every node."""
        geo = self.geo
        cy, cx, idx, keep, disp = self._candidates(self._group(s))[:5]
        d = disp[s]
        qy = self.node_y[:, None] + d[0]
        qx = self.node_x[None, :] + d[1]
        nyn, nxn = qy.shape
        vor = np.zeros((nyn, nxn), np.int32)
        if len(self.small):
            sp = seeds[self.small]
            # Tiles in decreasing order of list length: candidate j is then a prefix of them.
            perm, longer = self._cand[1][5], self._cand[1][6]
            cy, cx, idx, keep = cy[perm], cx[perm], idx[perm], keep[perm]
            # Coordinates relative to the tile centre keep float32 exact enough.
            ry = (self._tile_view(qy)[perm] - cy[:, None]).astype(np.float32)
            rx = (self._tile_view(qx)[perm] - cx[:, None]).astype(np.float32)
            oy = (sp[idx, 0] - cy[:, None]).astype(np.float32)
            ox = (sp[idx, 1] - cx[:, None]).astype(np.float32)
            best = np.full(ry.shape, np.inf, np.float32)
            arg_sorted = np.zeros(ry.shape, np.int64)
            for j in range(idx.shape[1]):
                n = longer[j]
                dd = (ry[:n] - oy[:n, j, None]) ** 2 + (rx[:n] - ox[:n, j, None]) ** 2
                closer = dd < best[:n]
                np.copyto(best[:n], dd, where=closer)
                np.copyto(arg_sorted[:n], idx[:n, j, None], where=closer)
            arg = np.empty_like(arg_sorted)
            arg[perm] = arg_sorted
            t = _TILE
            vor = (self.small32[arg].reshape(nyn // t, nxn // t, t, t).transpose(0, 2, 1, 3)
                   .reshape(nyn, nxn))
        lab = vor
        if len(self.dend):
            # Dendrites are discs painted over the cells, later ones on top: rasterise each disc
            # (grown by the displacement bound) on the node grid, then test the displaced nodes.
            g, dm = _G, self.dmax
            r = geo.radius[self.dend]
            c = seeds[self.dend]
            which, pix = _disc_pixels(c[:, 0] / g, c[:, 1] / g, (r + dm) / g + 1, nyn, nxn)
            hit = ((qy.reshape(-1)[pix] - c[which, 0]) ** 2 + (qx.reshape(-1)[pix] - c[which, 1]) ** 2
                   <= r[which] ** 2)
            top = np.full(nyn * nxn, -1, np.int32)
            np.maximum.at(top, pix[hit], self.dend[which[hit]])
            lab = np.where(top >= 0, top, vor.reshape(-1)).reshape(nyn, nxn)
        return qy, qx, vor, lab

    def _refine(self, by: np.ndarray, bx: np.ndarray, qy: np.ndarray, qx: np.ndarray,
                vor: np.ndarray, lab: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Cell ids ``(m, g * g)`` of the pixels of the mixed blocks ``(by, bx)`` (contiguous node arrays)."""
        g = _G
        w = qy.shape[1]
        f = (by * w + bx)[:, None] + np.array([0, 1, w, w + 1])  # flat index of the 4 corners
        py = np.take(qy.reshape(-1), f, mode="clip")  # (m, 4 corners)
        px = np.take(qx.reshape(-1), f, mode="clip")
        ry, rx = py[:, :1], px[:, :1]  # relative coordinates keep float32 exact enough
        py, px = (py - ry).astype(np.float32), (px - rx).astype(np.float32)
        wt = self.weights.T.astype(np.float32)  # (4 corners, g * g pixels)
        cand = np.take(vor.reshape(-1), f, mode="clip").astype(np.int32)  # (m, 4 candidates)
        first = cand[:, 0]
        other = np.where(cand[:, 1] != first, cand[:, 1], np.where(cand[:, 2] != first, cand[:, 2], cand[:, 3]))
        many = (cand != first[:, None]) & (cand != other[:, None])
        # Squared distances at the corners, interpolated: the quadratic term |q|^2 is common to
        # all seeds, so comparing these is comparing distances to the bilinear q. Blocks with
        # two seeds need one difference; the few with more compare every corner's seed.

        seed_y, seed_x = np.ascontiguousarray(seeds[:, 0]), np.ascontiguousarray(seeds[:, 1])

        def dist2(ids, rows=slice(None)):
            sy = (np.take(seed_y, ids, mode="clip")[:, None] - ry[rows]).astype(np.float32)
            sx = (np.take(seed_x, ids, mode="clip")[:, None] - rx[rows]).astype(np.float32)
            return (py[rows] - sy) ** 2 + (px[rows] - sx) ** 2

        diff = (dist2(other) - dist2(first)) @ wt  # (m, g * g)
        best = np.where(diff < 0, other[:, None], first[:, None])
        rows = np.flatnonzero(many.any(1))
        if len(rows):
            besth = dist2(cand[rows, 0], rows) @ wt
            sub = np.repeat(cand[rows, :1], g * g, 1)
            for c in range(1, 4):
                h = dist2(cand[rows, c], rows) @ wt
                closer = h < besth
                np.copyto(besth, h, where=closer)
                np.copyto(sub, cand[rows, c, None], where=closer)
            best[rows] = sub
        corner_lab = np.take(lab.reshape(-1), f, mode="clip").astype(np.int32)
        if len(self.dend):
            isd = self.geo.radius[corner_lab] > 0
            rows = np.flatnonzero(isd.any(1))
            if len(rows):
                # Each dendrite of a block's corners once, in increasing id (later ones on top).
                cl = np.where(isd[rows], corner_lab[rows], -1)
                cl.sort(1)
                top = np.full((len(rows), g * g), -1, np.int32)
                for c in range(4):
                    sel = np.flatnonzero((cl[:, c] >= 0) & ((cl[:, c] != cl[:, c - 1]) if c else True))
                    if not len(sel):
                        continue
                    lc, rr = cl[sel, c], rows[sel]
                    r2 = (self.geo.radius[lc] ** 2)[:, None]
                    ey = (seeds[lc, 0, None] - ry[rr]).astype(np.float32)
                    ex = (seeds[lc, 1, None] - rx[rr]).astype(np.float32)
                    e = ((py[rr] - ey) ** 2 + (px[rr] - ex) ** 2 - r2) @ wt
                    top[sel] = np.where(e <= 0, lc[:, None], top[sel])
                best[rows] = np.where(top >= 0, top, best[rows])
        return best

    def cells(self, s: int, seeds: np.ndarray, keep: bool = True) -> np.ndarray:
        """Cell id (int32) of every pixel of sub-slice ``s``.

        Cells are the Voronoi regions of the ordinary seeds in displaced coordinates
        ``q = p + warp(p)``, with dendrite discs painted on top. Ids are exact on a node grid
        every ``_G`` pixels; a block whose four corner nodes agree is filled with that id (cells
        are convex in ``q``), and in the other blocks every pixel takes the nearest of its corner
        nodes' seeds, with ``q`` interpolated bilinearly inside the block.
        """
        g, nby, nbx = _G, self.nby, self.nbx
        qy, qx, vor, lab = self._nodes(s, seeds)  # node arrays, at least (nby + 1, nbx + 1)
        l00, l01 = lab[:nby, :nbx], lab[:nby, 1:nbx + 1]
        l10, l11 = lab[1:nby + 1, :nbx], lab[1:nby + 1, 1:nbx + 1]
        shape = (nby, g, nbx, g)
        cell = np.empty(shape, np.int32) if keep else self.buf("cells", shape, np.int32)
        # Every block takes its first corner's id: the g ids of a block row are copied as one
        # 16-byte item (g = 4 int32), four times faster than broadcasting int32s.
        if g * cell.itemsize == 16:
            row = np.repeat(np.ascontiguousarray(l00, dtype=cell.dtype)[..., None], g, -1).view("V16")  # (nby, nbx, 1)
            cell.view("V16")[...] = row[:, None]
        else:
            cell[...] = l00[:, None, :, None]
        by, bx = np.nonzero((l00 != l01) | (l00 != l10) | (l00 != l11))
        if len(by):
            best = self._refine(by, bx, qy, qx, vor, lab, seeds)
            # Flat positions of the blocks' pixels in the (nby, g, nbx, g) layout.
            offsets = (np.arange(g)[:, None] * (nbx * g) + np.arange(g)).ravel()
            np.put(cell, (by * (g * nbx * g) + bx * g)[:, None] + offsets, best, mode="clip")
        return cell.reshape(nby * g, nbx * g)[:self.ny, :self.nx]

    # -- one sub-slice -------------------------------------------------------------------
    def _centres(self, s: int, qy: np.ndarray, qx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pixels whose displaced positions are ``(qy, qx)``: ``p = q - warp(p)``, two
        fixed-point steps."""
        geo = self.geo
        py, px = qy, qx
        for _ in range(2):
            w = _wave_points(geo.warp_k, geo.warp_phase, geo.warp_amp, s, py, px)
            py, px = qy - w[0], qx - w[1]
        return py, px

    def _mito(self, s: int, seeds: np.ndarray, cell: np.ndarray, near_wall: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat indices of the mitochondrion pixels of sub-slice ``s``, which are on the rim
        (the outer 28 % of the radius), and their rows and columns."""
        geo, ny, nx = self.geo, self.ny, self.nx
        m = geo.mito
        active = np.flatnonzero(np.abs(m[:, 1] - s) < m[:, 2])
        if not len(active):
            empty = np.empty(0, np.int64)
            return empty, np.empty(0, bool), empty, empty
        m = m[active]
        r = m[:, 3] * np.sqrt(np.maximum(1.0 - ((s - m[:, 1]) / m[:, 2]) ** 2, 0.0))
        ok = r >= 1.0
        m, r = m[ok], r[ok]
        cid = m[:, 0].astype(np.int64)
        py, px = self._centres(s, seeds[cid, 0] + m[:, 4], seeds[cid, 1] + m[:, 5])
        which, pix = _disc_pixels(py, px, r, ny, nx)
        ok = (cell.reshape(-1)[pix] == cid[which]) & ~near_wall[pix]
        which, pix = which[ok], pix[ok]
        yy, xx = np.divmod(pix, nx)
        rim = (yy - py[which]) ** 2 + (xx - px[which]) ** 2 > (0.72 * r[which]) ** 2
        return pix, rim, yy, xx

    def _vesicles(self, s: int, seeds: np.ndarray, cell: np.ndarray, near_wall: np.ndarray) -> np.ndarray:
        """Flat indices of the vesicle pixels of sub-slice ``s`` (inside their cell, off walls)."""
        v = self.geo.vesicle
        if not len(v):
            return np.empty(0, np.int64)
        v = v[np.abs(v[:, 1] - s) < v[:, 2]]
        r = np.sqrt(np.maximum(v[:, 2] ** 2 - (s - v[:, 1]) ** 2, 0.0))
        v, r = v[r >= 0.7], r[r >= 0.7]
        cid = v[:, 0].astype(np.int64)
        py, px = self._centres(s, seeds[cid, 0] + v[:, 3], seeds[cid, 1] + v[:, 4])
        which, pix = _disc_pixels(py, px, r, self.ny, self.nx)
        return pix[(cell.reshape(-1)[pix] == cid[which]) & ~near_wall[pix]]

    def sub_slice(self, s: int, fine: np.ndarray, grain: np.ndarray, shade: np.ndarray,
                  fade: np.ndarray | None, want_labels: bool, out: np.ndarray):
        """Render sub-slice ``s``: clean image into ``out`` (float32), codes and cell ids if asked.

        ``fine``, ``grain``, ``shade`` and ``fade`` may be views.
        """
        p, geo, ny, nx = self.p, self.geo, self.ny, self.nx
        seeds = geo.seeds(s)
        cell = self.cells(s, seeds, keep=want_labels and self.keep_cells)
        wall = _thick_boundaries(cell, out=self.buf("wall", (ny, nx), bool),
                                 tmp=self.buf("btmp", (ny, nx), bool))
        if p.wall_width >= 4:
            wall = _dilate_cross(wall.copy(), out=wall)
        it, tx = p.intensity, p.texture
        # Cytoplasm and glia: each cell's own intensity (class and staining), one texture.
        image = np.take(self.cell_base, cell, out=out, mode="clip")
        image += fine
        image += shade
        f1 = self.buf("f1", (ny, nx))
        flat = image.reshape(-1)
        near_wall = _dilate_cross(wall, out=self.buf("near", (ny, nx), bool)).reshape(-1)
        # Vesicles: dark dots, most of the way to the membrane intensity.
        ves_px = self._vesicles(s, seeds, cell, near_wall)
        if len(ves_px):
            flat[ves_px] += np.float32(0.7) * (np.float32(it["membrane"]) - flat[ves_px])
        # Mitochondria: discs in displaced coordinates, inside their own cell, off the walls,
        # with an optional dark rim (their outer membrane).
        mito_px, rim, yy, xx = self._mito(s, seeds, cell, near_wall)
        if len(mito_px):
            phase = _slice_rng(self.seed, p.name, s).uniform(0, 2 * np.pi)
            cristae = np.sin(np.float32(0.9) * (yy + xx).astype(np.float32) + np.float32(phase))
            value = it["mito"] + tx["mito"] * (0.6 * cristae + grain[yy, xx])
            if p.mito_rim:
                value[rim] += p.mito_rim * (it["membrane"] - value[rim])
            flat[mito_px] = value
        # Membranes: dark lines centred on the walls, a little wider than the label (one level
        # on the wall, a lower one beside it), faded along faint stretches.
        index = np.add(wall.view(np.uint8), near_wall.reshape(ny, nx).view(np.uint8),
                       out=self.buf("u1", (ny, nx), np.uint8))
        membrane = np.take(_MEMBRANE_LEVELS, index, out=self.buf("f2", (ny, nx)), mode="clip")
        if fade is not None:
            membrane *= fade
        np.subtract(np.float32(it["membrane"]), image, out=f1)
        f1 *= membrane
        image += f1
        if not want_labels:
            return None, None
        codes = np.take(self.cell_code, cell, mode="clip").reshape(-1)
        codes[mito_px] = MITOCHONDRIA
        codes = codes.reshape(ny, nx)
        # codes[wall] = BOUNDARY as byte arithmetic (a boolean-mask write is several times slower).
        over = np.subtract(codes, np.uint8(BOUNDARY), out=self.buf("u2", (ny, nx), np.uint8))
        over *= wall.view(np.uint8)
        codes -= over
        return codes, cell

    def textures(self, z: int):
        """Fine and grain textures and shading shared by the sub-slices of returned slice ``z``.

        The textures are windows of two fields made once per volume (a bank, :meth:`_bank`),
        at a random offset per slice: blurred noise shifted by a few pixels is uncorrelated with
        itself, so neighbouring slices get independent-looking textures for the price of a view.
        """
        p, geo, ny, nx = self.p, self.geo, self.ny, self.nx
        fine_bank, grain_bank, fade_bank = self._bank()
        oy, ox, fy, fx = _slice_rng(self.seed, p.name, 2_000_000 + z).integers(0, _BANK_MARGIN + 1, 4)
        fine = fine_bank[oy:oy + ny, ox:ox + nx]
        grain = grain_bank[oy:oy + ny, ox:ox + nx]
        fade = None if fade_bank is None else fade_bank[fy:fy + ny, fx:fx + nx]
        s = z * p.z_factor + p.z_factor // 2
        shade = _wave_grid(geo.tex_k, geo.tex_phase, geo.tex_amp[:, None], s, self.ys, self.xs,
                           out=self.buf("shade", (1, ny, nx)))[0]
        shade *= np.float32(p.shading)
        return fine, grain, shade, fade

    def _bank(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The volume's texture fields, ``_BANK_MARGIN`` pixels larger than a slice each way.

        Uniform noise (cheap to draw; blurred, it is close to Gaussian) of unit variance, scaled
        like the mean of ``z_factor`` independent sub-slice textures, blurred into a fine
        (sigma 1) and a grain (sigma 0.6) texture; and the membrane fade: ``1 - membrane_fade *
        clip((z - 0.3) / 1.2, 0, 1)`` with ``z`` smooth noise of unit variance (plane waves 120 to
        300 nm long: about a wall segment), so about a third of the membranes are fainter than
        drawn and some 7 % lose all of ``membrane_fade``.
        """
        if self._textures is None:
            p, m = self.p, _BANK_MARGIN
            shape = (self.ny + m, self.nx + m)
            raw = _slice_rng(self.seed, p.name, 3_000_000).random(shape, dtype=np.float32)
            raw -= np.float32(0.5)
            raw *= np.float32(np.sqrt(12.0 / p.z_factor))
            tmp, mid = np.empty(shape, np.float32), np.empty(shape, np.float32)
            fine = _blur2d(raw, _FINE_TAPS, tmp=tmp, mid=mid)
            fine *= np.float32(_FINE_GAIN * p.texture["cytoplasm"])  # the texture of cytoplasm and glia
            grain = _blur2d(raw, _GRAIN_TAPS, tmp=tmp, mid=mid)
            grain *= np.float32(_GRAIN_GAIN)
            fade = None
            if p.membrane_fade:
                # Smooth noise: 24 plane waves of random direction, 120 to 300 nm long.
                rng, w = _slice_rng(self.seed, p.name, 3_000_001), 24
                angle = rng.uniform(0, 2 * np.pi, w)
                length = rng.uniform(120.0, 300.0, w) / p.voxel_size[2]
                k = np.stack([np.zeros(w), np.sin(angle), np.cos(angle)], 1) * (2 * np.pi / length)[:, None]
                amp = np.full((w, 1), np.sqrt(2.0 / w))
                z = _wave_grid(k, rng.uniform(0, 2 * np.pi, w), amp, 0.0, np.arange(shape[0], dtype=float),
                               np.arange(shape[1], dtype=float))[0]
                z -= np.float32(0.3)
                np.clip(z, 0, 1.2, out=z)
                z *= np.float32(-p.membrane_fade / 1.2)
                z += np.float32(1.0)
                fade = z
            self._textures = (fine, grain, fade)
        return self._textures


# --------------------------------------------------------------------------- acquisition


def _smooth_walk(rng: np.random.Generator, n: int, step: float) -> np.ndarray:
    """A random walk of ``n`` steps, recentred on 0 and gently smoothed."""
    walk = np.cumsum(rng.normal(0.0, step, n))
    return ndi.gaussian_filter1d(walk - walk.mean(), 1.0, mode="nearest") if n > 1 else walk * 0


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

    Examples
    --------
    >>> v = make_volume("snemi", (3, 48, 48), seed=1)
    >>> v.voxel_size
    (30.0, 6.0, 6.0)
    """
    plan = _plan(domain, shape, seed)
    shape = plan.shape
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
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


def parameter_table() -> "pandas.DataFrame":
    """The parameters of both twins side by side (rows: parameters, columns: domains)."""
    import pandas as pd
    from dataclasses import asdict

    rows: dict[str, dict[str, str]] = {}
    for name, p in PARAMS.items():
        for key, value in asdict(p).items():
            if key == "name":
                continue
            if isinstance(value, dict):
                for sub, v in value.items():
                    rows.setdefault(f"{key}: {sub}", {})[name] = f"{v:g}"
            else:
                rows.setdefault(key, {})[name] = (", ".join(f"{v:g}" for v in value)
                                                  if isinstance(value, tuple) else f"{value:g}")
    return pd.DataFrame(rows).T.fillna("")
