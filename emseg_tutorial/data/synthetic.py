"""Synthetic twins of the paper's two EM volumes, generated from a seed and a shape.

The paper trains on a FIBSEM volume of *Drosophila* neuropil (10 nm isotropic voxels, labels
boundary / cytoplasm / mitochondria / glia) and adapts to SNEMI3D (mouse cortex, serial-section
SEM, 6 x 6 x 30 nm voxels, no labels used). Neither is needed to follow the book: this module
draws volumes that share the properties the paper's methods depend on.

How a volume is made
--------------------
1. **Geometry.** Neurites are tubes that run roughly along z with a random tilt and a smooth
   wiggle. On every (isotropic) sub-slice each neurite is a seed point; the cells of that
   sub-slice are the Voronoi regions of the seeds (a 2D Euclidean distance transform), bent by a
   smooth displacement field so that walls curve. Some domains add a few large neurites
   (dendrites) drawn as discs before the Voronoi fill. Mitochondria are ellipsoids elongated
   along their neurite; glia are a subset of cells.
2. **Labels.** Boundary (code 1) is ``skimage.segmentation.find_boundaries(mode="thick")`` of
   the cell ids on each 2D slice (a wall is 2 pixels wide), cytoplasm 2, mitochondria 3 (kept
   one pixel away from walls), glia 4.
3. **Image.** Each class gets an intensity and its own texture; walls are drawn as dark
   membranes; then the acquisition is simulated: point-spread blur and noise for FIBSEM;
   section thickness (the mean of ``z_factor`` isotropic sub-slices, so oblique walls become
   wide and faint), a gamma curve, lower contrast, slice-to-slice drift of brightness and
   contrast, stronger noise and occasional slice misalignment for SNEMI3D.

Difficulty is fixed here
------------------------
The two parameter sets :data:`FIBSEM` and :data:`SNEMI` fix the twins' difficulty; later
chapters must not change them to reach a number. The domain gap is structural, not only an
intensity shift: the target has smaller neurites with large dendrites among them, no glia, thin
but section-blurred oblique membranes, a nonlinear intensity curve, per-slice drift and
misalignment. Histogram matching removes only part of it (chapter 6 measures how much).

Documented class fractions (checked by the tests on 12 x 128 x 128 volumes; a larger volume
lies nearer the middle of each range): source boundary 8-16 % (about 12 %, the paper says about
10 %), mitochondria 2-10 %, glia 3-20 %, cytoplasm the rest; target boundary 10-22 % (about
16 %), mitochondria about 2-3 %, no glia.

Rendering works on blocks of slices with per-slice random streams, so a volume of any depth is
made in bounded memory and the same ``(domain, shape, seed)`` always gives the same volume.

Examples
--------
>>> vol = make_volume("fibsem", (4, 64, 64), seed=0)
>>> vol.image.shape, vol.image.dtype.name, sorted(set(vol.labels.ravel().tolist()))
((4, 64, 64), 'uint8', [1, 2, 3, 4])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from ..labels import BOUNDARY, CYTOPLASM, GLIA, MITOCHONDRIA
from ..progress import progress as progress_bar
from .volume import Volume

DOMAINS = ("fibsem", "snemi")


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
        Amplitude of the fine texture of each class.
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


#: Source twin: FIBSEM of fly neuropil, 10 nm isotropic, four classes, stable across slices.
FIBSEM = DomainParams(
    name="fibsem",
    voxel_size=(10.0, 10.0, 10.0),
    z_factor=1,
    cell_spacing=30.0,
    tilt=0.35,
    wiggle=4.0,
    warp=4.0,
    dendrite_fraction=0.0,
    dendrite_radius=(0.0, 0.0),
    glia_fraction=0.16,
    mito_per_cell=1.8,
    mito_radius=(4.0, 7.5),
    mito_length=(10.0, 24.0),
    intensity={"membrane": 0.16, "cytoplasm": 0.66, "mito": 0.34, "glia": 0.50},
    texture={"cytoplasm": 0.035, "mito": 0.09, "glia": 0.10},
    psf_sigma=(0.8, 0.9, 0.9),
    noise=0.045,
)

#: Target twin: serial-section SEM of mouse cortex, 6 x 6 x 30 nm, no glia, drifting slices.
SNEMI = DomainParams(
    name="snemi",
    voxel_size=(30.0, 6.0, 6.0),
    z_factor=5,
    cell_spacing=20.0,
    tilt=0.55,
    wiggle=5.0,
    warp=3.0,
    dendrite_fraction=0.22,
    dendrite_radius=(22.0, 40.0),
    glia_fraction=0.0,
    mito_per_cell=1.2,
    mito_radius=(3.5, 6.5),
    mito_length=(15.0, 40.0),
    intensity={"membrane": 0.10, "cytoplasm": 0.72, "mito": 0.42, "glia": 0.72},
    texture={"cytoplasm": 0.06, "mito": 0.05, "glia": 0.0},
    psf_sigma=(0.0, 1.2, 1.2),
    noise=0.07,
    gamma=1.6,
    contrast=(0.12, 0.70),
    drift=0.035,
    misalign_prob=0.1,
    misalign_max=6,
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
    wiggle_freq = rng.uniform(2 * np.pi / 120, 2 * np.pi / 30, (n, k))
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

    warp_k, warp_phase = waves(8, (40.0, 120.0))
    warp_amp = rng.normal(0.0, p.warp / np.sqrt(8 / 2), (8, 2))
    tex_k, tex_phase = waves(6, (60.0, 250.0))
    tex_amp = rng.normal(0.0, 1.0 / np.sqrt(6), 6)
    return _Geometry(origin, velocity, wiggle_amp, wiggle_freq, wiggle_phase, radius, glia, mito,
                     warp_k, warp_amp, warp_phase, tex_k, tex_amp, tex_phase)


# --------------------------------------------------------------------------- one sub-slice


def _slice_rng(seed: int, domain: str, s: int) -> np.random.Generator:
    """Random stream of sub-slice ``s``: independent of how the volume is split in blocks."""
    return np.random.default_rng([seed, DOMAINS.index(domain), s + 1_000_000])


def _wave_sum(k: np.ndarray, phase: np.ndarray, amp: np.ndarray, s: float, ny: int, nx: int
              ) -> np.ndarray:
    """``sum_w amp[w, c] * sin(k_w . (s, y, x) + phase_w)`` on the slice grid: ``(C, Y, X)``.

    Uses ``sin(a + b) = sin a cos b + cos a sin b`` so the 2D sum is two small matrix products
    instead of one ``sin`` per wave and pixel.
    """
    ay = k[:, 1, None] * np.arange(ny)[None]  # (W, Y)
    bx = k[:, 2, None] * np.arange(nx)[None] + (k[:, 0] * s + phase)[:, None]  # (W, X)
    sy, cy, sx, cx = np.sin(ay), np.cos(ay), np.sin(bx), np.cos(bx)
    out = np.einsum("wc,wy,wx->cyx", amp, sy, cx, optimize=True)
    out += np.einsum("wc,wy,wx->cyx", amp, cy, sx, optimize=True)
    return out.astype(np.float32)


def _cells(geo: _Geometry, s: int, ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell id and mitochondrion mask of sub-slice ``s`` before warping."""
    seeds = geo.seeds(s)
    yi = np.rint(seeds[:, 0]).astype(int)
    xi = np.rint(seeds[:, 1]).astype(int)
    inside = (yi >= 0) & (yi < ny) & (xi >= 0) & (xi < nx)
    yy, xx = np.mgrid[0:ny, 0:nx]

    # Voronoi fill from in-slice seeds of the ordinary neurites (2D EDT with nearest indices).
    small = inside & (geo.radius == 0)
    marker = np.full((ny, nx), -1, dtype=np.int64)
    marker[yi[small], xi[small]] = np.flatnonzero(small)
    if small.any():
        _, (iy, ix) = ndi.distance_transform_edt(marker < 0, return_indices=True)
        cell = marker[iy, ix]
    else:
        cell = np.zeros((ny, nx), dtype=np.int64)
    # Dendrites are discs painted over the Voronoi fill (seeds outside the slice count too).
    for i in np.flatnonzero(geo.radius > 0):
        r = geo.radius[i]
        cy, cx = seeds[i]
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, ny)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, nx)
        if y0 >= y1 or x0 >= x1:
            continue
        disc = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        cell[y0:y1, x0:x1][disc] = i

    mito = np.zeros((ny, nx), dtype=bool)
    active = np.abs(geo.mito[:, 1] - s) < geo.mito[:, 2]
    for c, zc, half, rad, dy, dx, _ in geo.mito[active]:
        r = rad * np.sqrt(max(1.0 - ((s - zc) / half) ** 2, 0.0))
        if r < 1.0:
            continue
        cy, cx = seeds[int(c)] + (dy, dx)
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, ny)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, nx)
        if y0 >= y1 or x0 >= x1:
            continue
        disc = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        mito[y0:y1, x0:x1] |= disc & (cell[y0:y1, x0:x1] == int(c))
    return cell, mito


def _sub_slice(p: DomainParams, geo: _Geometry, s: int, ny: int, nx: int, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render sub-slice ``s``: returns ``(clean image float32, class codes, cell ids)``."""
    cell, mito = _cells(geo, s, ny, nx)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    shift = _wave_sum(geo.warp_k, geo.warp_phase, geo.warp_amp, s, ny, nx)
    coords = np.stack([yy + shift[0], xx + shift[1]])
    cell = ndi.map_coordinates(cell, coords, order=0, mode="nearest")
    mito = ndi.map_coordinates(mito.view(np.uint8), coords, order=0, mode="nearest").astype(bool)

    wall = find_boundaries(cell, mode="thick")
    near_wall = ndi.binary_dilation(wall, iterations=1)
    codes = np.full((ny, nx), CYTOPLASM, dtype=np.uint8)
    codes[geo.glia[cell]] = GLIA
    codes[mito & ~near_wall] = MITOCHONDRIA
    codes[wall] = BOUNDARY

    rng = _slice_rng(seed, p.name, s)
    it, tx = p.intensity, p.texture
    shade = 0.06 * _wave_sum(geo.tex_k, geo.tex_phase, geo.tex_amp[:, None], s, ny, nx)[0]
    fine = ndi.gaussian_filter(rng.standard_normal((ny, nx), dtype=np.float32), 1.0) * 2.5
    grain = ndi.gaussian_filter(rng.standard_normal((ny, nx), dtype=np.float32), 0.6) * 1.6
    image = np.full((ny, nx), it["cytoplasm"], dtype=np.float32) + shade + tx["cytoplasm"] * fine
    is_glia = codes == GLIA
    image[is_glia] = (it["glia"] + shade + tx["glia"] * grain)[is_glia]
    is_mito = codes == MITOCHONDRIA
    # Cristae: stripes across the mitochondrion plus grain.
    cristae = np.sin(0.9 * (yy[is_mito] + xx[is_mito]) + rng.uniform(0, 2 * np.pi))
    image[is_mito] = it["mito"] + tx["mito"] * (0.6 * cristae + grain[is_mito])
    # Membranes: dark lines centred on the walls, a little wider than the label.
    membrane = np.clip(ndi.gaussian_filter(wall.astype(np.float32), 0.7) * 1.6, 0.0, 1.0)
    image = image * (1.0 - membrane) + it["membrane"] * membrane
    return image, codes, cell


# --------------------------------------------------------------------------- acquisition


def _smooth_walk(rng: np.random.Generator, n: int, step: float) -> np.ndarray:
    """A random walk of ``n`` steps, recentred on 0 and gently smoothed."""
    walk = np.cumsum(rng.normal(0.0, step, n))
    return ndi.gaussian_filter1d(walk - walk.mean(), 1.0, mode="nearest") if n > 1 else walk * 0


def _render_block(p: DomainParams, geo: _Geometry, z0: int, z1: int, shape: tuple[int, int, int],
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean image, codes and cell ids of returned slices ``z0:z1`` (float32, uint8, int64)."""
    _, ny, nx = shape
    k = p.z_factor
    halo = int(np.ceil(4 * p.psf_sigma[0]))
    subs = range(z0 * k - halo, z1 * k + halo)
    rendered = [_sub_slice(p, geo, s, ny, nx, seed) for s in subs]
    image = np.stack([r[0] for r in rendered])
    if p.psf_sigma[0] > 0:
        image = ndi.gaussian_filter1d(image, p.psf_sigma[0], axis=0, mode="nearest")
    image = image[halo: len(subs) - halo]
    # Section thickness: each returned slice integrates z_factor sub-slices.
    image = image.reshape(z1 - z0, k, ny, nx).mean(axis=1)
    centre = [halo + i * k + k // 2 for i in range(z1 - z0)]
    codes = np.stack([rendered[c][1] for c in centre])
    cells = np.stack([rendered[c][2] for c in centre])
    if p.psf_sigma[1] > 0:
        image = ndi.gaussian_filter(image, (0, p.psf_sigma[1], p.psf_sigma[2]))
    return image, codes, cells


def _acquire(p: DomainParams, image: np.ndarray, z0: int, gain: np.ndarray, offset: np.ndarray,
             seed: int) -> np.ndarray:
    """Intensity curve, drift and noise of slices starting at ``z0``; returns uint8."""
    out = np.clip(image, 0.0, 1.0) ** p.gamma
    n = image.shape[0]
    out = offset[z0:z0 + n, None, None] + gain[z0:z0 + n, None, None] * out
    for i in range(n):
        rng = _slice_rng(seed, p.name, -1 - (z0 + i))  # distinct from the sub-slice streams
        out[i] += rng.normal(0.0, p.noise, out[i].shape).astype(np.float32)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


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
    p = domain_params(domain)
    shape = _check_shape(shape)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    nz, ny, nx = shape
    rng = np.random.default_rng([int(seed), DOMAINS.index(domain), nz, ny, nx])
    geo = _make_geometry(p, shape, rng)
    offset0, gain0 = p.contrast
    gain = gain0 * (1.0 + _smooth_walk(rng, nz, p.drift * 2)) if p.drift else np.full(nz, gain0)
    offset = offset0 + _smooth_walk(rng, nz, p.drift) if p.drift else np.full(nz, offset0)
    shifts = _misalign(p, rng, nz)
    for z0 in range(0, nz, block):
        z1 = min(z0 + block, nz)
        clean, codes, cells = _render_block(p, geo, z0, z1, shape, seed)
        image = _acquire(p, clean, z0, gain, offset, seed)
        for i in range(z1 - z0):
            dy, dx = shifts[z0 + i]
            image[i], codes[i], cells[i] = (_shift(a[i], dy, dx) for a in (image, codes, cells))
        yield z0, image, codes, cells


def make_volume(domain: str, shape=(32, 256, 256), seed: int = 0, *, with_cells: bool = False,
                progress: bool = False) -> Volume:
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
    shape = _check_shape(shape)
    image = np.empty(shape, np.uint8)
    labels = np.empty(shape, np.uint8)
    cells = np.empty(shape, np.int64) if with_cells else None
    blocks = progress_bar(iter_blocks(domain, shape, seed), total=-(-shape[0] // 16), desc=f"synth {domain}",
                          unit="block", enabled=progress)
    for z0, im, lab, cel in blocks:
        image[z0:z0 + len(im)] = im
        labels[z0:z0 + len(im)] = lab
        if cells is not None:
            cells[z0:z0 + len(im)] = cel
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
