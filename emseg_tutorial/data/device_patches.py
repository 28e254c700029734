"""Patches drawn where the network runs: :class:`DevicePatchSampler`, the torch twin of
:class:`~.patches.PatchSampler`.

On a GPU, drawing patches with numpy on the host and copying every batch to the device costs
more than the network's step. This sampler copies the [0, 1] volume, the class indices and the
weight map to the device once, at construction, and draws every batch there with torch ops and
its own ``torch.Generator``: slices, crop corners, flips, quarter turns and wrong-slice partners
become one index tensor per batch and one gather per volume; the jitter is
:meth:`~.augment.Jitter.apply_torch`; the standardisation uses the same
:class:`~.normalize.Normalizer` statistics. The batch has the keys, shapes and dtypes of
:meth:`PatchSampler.sample <.patches.PatchSampler.sample>` (tensors instead of arrays) and the
same distribution (``tests/test_device_patches.py`` compares them), but not the same numbers for
a seed: the random streams differ. Nothing is read back to the host while sampling.

:func:`make_sampler` picks this sampler on CUDA and the numpy one on the CPU (the trainer and the
adaptation loop call it).

Examples
--------
>>> import numpy as np, torch
>>> rng = np.random.default_rng(0)
>>> img = rng.integers(0, 255, (4, 40, 40), dtype=np.uint8)
>>> lab = rng.integers(1, 3, (4, 40, 40)).astype(np.uint8)
>>> sampler = DevicePatchSampler(img, lab, patch=32, seed=0, device="cpu")
>>> batch = sampler.sample(2)
>>> batch["image"].shape, batch["target"].dtype, batch["image"].device.type
(torch.Size([2, 1, 32, 32]), torch.int64, 'cpu')
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .normalize import Normalizer
from .patches import PatchSampler, check_gap


class DevicePatchSampler:
    """Random ``patch x patch`` crops with flips and quarter turns, drawn on ``device``.

    Parameters
    ----------
    image, labels, weights, patch, slices, augment, seed, mismatch_gap, normalizer
        As :class:`~.patches.PatchSampler` (same checks, same normaliser).
    jitter : Jitter or callable, optional
        Intensity augmentation of the [0, 1] patches: a :class:`~.augment.Jitter` (its
        :meth:`~.augment.Jitter.apply_torch` runs), or ``jitter(batch01, generator) -> batch01``
        on tensors.
    device : str or torch.device
        Where the volumes live and batches are drawn.

    Attributes
    ----------
    normalizer : Normalizer
        The volume's intensity statistics (as the numpy sampler's).
    generator : torch.Generator
        The sampler's own random stream, on ``device`` (:meth:`state`, :meth:`set_state`).
    """

    def __init__(self, image: np.ndarray, labels: np.ndarray | None = None, weights: np.ndarray | None = None,
                 patch: int = 128, slices=None, augment: bool = True, jitter: Callable | None = None,
                 seed: int = 0, mismatch_gap: int | None = None, *, device: str | torch.device = "cpu",
                 normalizer: Normalizer | None = None):
        host = PatchSampler(image, labels, weights, patch=patch, slices=slices, augment=augment,
                            seed=seed, mismatch_gap=mismatch_gap, normalizer=normalizer)  # the same checks and statistics
        self.device = torch.device(device)
        self.normalizer = host.normalizer
        self.patch = host.patch
        self.augment = augment
        self.jitter = jitter
        self.mismatch_gap = mismatch_gap
        self.shape = host.unit.shape
        put = lambda a, dtype: torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype)  # noqa: E731
        self.unit = put(host.unit, torch.float32)
        # class indices -1..3 kept as int8 (an eighth of int64's memory), widened after cropping
        self.target = None if host.target is None else put(host.target, torch.int8)
        self.weights = None if weights is None else put(weights, torch.float32)
        self.slices = put(host.slices, torch.int64)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def state(self) -> torch.Tensor:
        """The random stream's state (a CPU byte tensor), for :meth:`set_state`."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Continue the random stream from :meth:`state`."""
        self.generator.set_state(state)

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=self.generator, device=self.device)

    def _offsets(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column, inside the crop, of every pixel of every output patch: ``(n, py, px)``.

        Flips and quarter turns are only a permutation of these offsets: output pixel ``(i, j)``
        of ``rot90(flipped, k)`` is ``flipped[a, b]`` with ``(a, b)`` = ``(i, j)``, ``(j, P-1-i)``,
        ``(P-1-i, P-1-j)`` or ``(P-1-j, i)`` for ``k`` = 0..3 (``np.rot90``'s convention), and
        ``flipped[a, b]`` is ``crop[P-1-a or a, P-1-b or b]``.
        """
        py, px = self.patch
        i = torch.arange(py, device=self.device)[None, :, None]
        j = torch.arange(px, device=self.device)[None, None, :]
        if not self.augment:
            return i.expand(n, py, px), j.expand(n, py, px)
        rand = lambda: torch.rand(n, generator=self.generator, device=self.device)[:, None, None]  # noqa: E731
        flip_y, flip_x = rand() < 0.5, rand() < 0.5
        if py == px:  # quarter turns only keep the shape of square patches
            k = self._randint(4, n)[:, None, None]
            last = py - 1
            a = torch.where(k == 0, i, torch.where(k == 1, j, torch.where(k == 2, last - i, last - j)))
            b = torch.where(k == 0, j, torch.where(k == 1, last - i, torch.where(k == 2, last - j, i)))
        else:
            a, b = i.expand(n, py, px), j.expand(n, py, px)
        return torch.where(flip_y, py - 1 - a, a), torch.where(flip_x, px - 1 - b, b)

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        """A batch on the device, as :meth:`PatchSampler.sample <.patches.PatchSampler.sample>`:
        ``image`` (B, 1, P, P) float32 standardised and, when given, ``target`` (B, P, P) int64
        class indices (-1 ignored), ``weight`` (B, P, P) float32, ``mismatched`` (B, P, P) int64,
        and ``z`` / ``z_mismatched`` (B,) int64."""
        nz, ny, nx = self.shape
        py, px = self.patch
        z = self.slices[self._randint(len(self.slices), batch)]
        y = self._randint(ny - py + 1, batch)[:, None, None]
        x = self._randint(nx - px + 1, batch)[:, None, None]
        rows, cols = self._offsets(batch)
        plane = (y + rows) * nx + (x + cols)  # flat index inside a slice, flips and turns included

        def crop(volume: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
            return torch.take(volume, zs[:, None, None] * (ny * nx) + plane)

        unit = crop(self.unit, z)
        out = {}
        if self.target is not None:
            out["target"] = crop(self.target, z).long()
        if self.weights is not None:
            out["weight"] = crop(self.weights, z)
        if self.mismatch_gap is not None:
            z_other = distant_slices_torch(z, nz, self.mismatch_gap, self.generator)
            out["mismatched"] = crop(self.target, z_other).long()
        if self.jitter is not None:
            apply = getattr(self.jitter, "apply_torch", self.jitter)
            unit = apply(unit, self.generator)
        out = {"image": self.normalizer.standardize(unit)[:, None].contiguous(), **out, "z": z}
        if self.mismatch_gap is not None:
            out["z_mismatched"] = z_other
        return out


def distant_slices_torch(z: torch.Tensor, depth: int, gap: int, generator: torch.Generator) -> torch.Tensor:
    """:func:`~.patches.distant_slices` in torch: for each slice in ``z``, a uniform random slice
    at least ``gap`` away, drawn with ``generator`` on ``z``'s device.

    Examples
    --------
    >>> z = torch.tensor([0, 5, 9])
    >>> other = distant_slices_torch(z, 10, 4, torch.Generator().manual_seed(0))
    >>> bool(((other - z).abs() >= 4).all()), bool(((other >= 0) & (other < 10)).all())
    (True, True)
    """
    check_gap(depth, gap)
    below = (z - gap + 1).clamp_min(0)
    above = (depth - z - gap).clamp_min(0)
    count = below + above
    u = torch.rand(z.shape, generator=generator, device=z.device) * count
    u = torch.minimum(u.long(), count - 1)  # float32 rounding must not reach ``count``
    return torch.where(u < below, u, z + gap + (u - below))


def samples_on_device(device: torch.device) -> bool:
    """Whether :func:`make_sampler` draws patches on ``device`` itself: on CUDA only.

    On a GPU, numpy sampling and the copy of every batch cost more than the network step. On
    the CPU the numpy sampler stays: it is the measured path (there the full training step
    took 1.03x the bare model step at the cpu preset), and the torch sampler, which draws the
    same distribution on the CPU too, has not been timed against it on a quiet machine.
    """
    return torch.device(device).type == "cuda"


def make_sampler(image: np.ndarray, labels: np.ndarray | None = None, weights: np.ndarray | None = None, *,
                 device: str | torch.device, **kwargs):
    """The patch sampler for ``device``: a :class:`DevicePatchSampler` on CUDA
    (:func:`samples_on_device`), else a :class:`~.patches.PatchSampler`.

    Both take the same arguments (``kwargs``: ``patch``, ``slices``, ``augment``, ``jitter``,
    ``seed``, ``mismatch_gap``), return batches with the same keys, shapes and dtypes (tensors on
    the device, or arrays that :func:`~emseg_tutorial.devices.to_device` copies), and have
    ``normalizer``, ``state()`` and ``set_state()``.

    Examples
    --------
    >>> type(make_sampler(np.zeros((2, 16, 16), np.uint8), patch=16, device="cpu")).__name__
    'PatchSampler'
    """
    if samples_on_device(device):
        return DevicePatchSampler(image, labels, weights, device=device, **kwargs)
    return PatchSampler(image, labels, weights, **kwargs)
