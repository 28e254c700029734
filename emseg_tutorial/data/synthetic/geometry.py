"""The geometry of one volume: neurite seeds, dendrites, mitochondria, glia, vesicles, warp waves.

Small arrays only, drawn from the volume's random stream once; the renderer evaluates them on
each sub-slice.

Examples
--------
>>> import numpy as np
>>> from .params import FIBSEM
>>> geo = _make_geometry(FIBSEM, (2, 32, 32), np.random.default_rng(0))
>>> geo.seeds(0.0).shape[1]
2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import DomainParams


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

