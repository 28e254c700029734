"""From volumes to training batches: intensity scaling and random 2D patches with flips.

The network sees each volume standardised by its own mean and standard deviation (computed
once over the whole volume, after scaling to [0, 1]; :mod:`.normalize`). Augmentations that change intensities
(the paper's jitter, :mod:`.augment`) act on the [0, 1] values *before* that standardisation,
so a brighter or flatter patch stays brighter or flatter for the network.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> img = rng.integers(0, 255, (4, 40, 40), dtype=np.uint8)
>>> lab = rng.integers(1, 3, (4, 40, 40)).astype(np.uint8)
>>> sampler = PatchSampler(img, lab, patch=32, seed=0)
>>> batch = sampler.sample(2)
>>> batch["image"].shape, batch["target"].shape
((2, 1, 32, 32), (2, 32, 32))
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .._validate import check_image
from .normalize import Normalizer, normalizer_of


def codes_to_index(labels: np.ndarray) -> np.ndarray:
    """Label codes to class indices: ``code - 1``, with code 0 becoming ``-1`` (ignored)."""
    return labels.astype(np.int64) - 1


class PatchSampler:
    """Draw random ``patch x patch`` crops from chosen slices, with flips and 90-degree turns.

    Parameters
    ----------
    image : ndarray, (Z, Y, X)
        Raw image (any dtype; scaled and standardised by its :class:`~.normalize.Normalizer`).
    labels : ndarray of uint8, (Z, Y, X), optional
        Codes for the task (0 ignored); None for unlabelled (target) volumes.
    weights : ndarray of float32, (Z, Y, X), optional
        Per-pixel loss weights, cropped along with the labels.
    patch : int
        Side of the square patches (smaller slices are used whole).
    slices : sequence of int, optional
        Slices to sample from (default: all).
    augment : bool
        Random flips and 90-degree rotations (labels and weights follow).
    jitter : callable, optional
        ``jitter(batch01, rng) -> batch01``: intensity augmentation on [0, 1] patches.
    seed : int
        Seed of the sampler's own random stream.
    mismatch_gap : int, optional
        Also return ``mismatched``: the labels of the same crop in a slice at least this many
        slices away (:func:`distant_slices`), the "wrong label map" of the conditional
        discriminator. Needs ``labels``.
    normalizer : Normalizer, optional
        The volume's normaliser, shared with whatever else predicts this volume (the trainer
        passes the one its validation uses); default: ``image``'s own.
    """

    def __init__(self, image: np.ndarray, labels: np.ndarray | None = None, weights: np.ndarray | None = None,
                 patch: int = 128, slices=None, augment: bool = True,
                 jitter: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 seed: int = 0, mismatch_gap: int | None = None, *, normalizer: Normalizer | None = None):
        image = check_image(image, "image")
        if labels is not None and labels.shape != image.shape:
            raise ValueError(f"labels shape {labels.shape} does not match image shape {image.shape}")
        if weights is not None and weights.shape != image.shape:
            raise ValueError(f"weights shape {weights.shape} does not match image shape {image.shape}")
        if patch < 8:
            raise ValueError(f"patch must be at least 8 pixels, got {patch}")
        self.normalizer = normalizer_of(image, normalizer)
        self.unit = self.normalizer.unit(image)
        self.target = None if labels is None else codes_to_index(labels)
        self.weights = weights
        self.patch = (min(patch, image.shape[1]), min(patch, image.shape[2]))
        self.slices = np.arange(image.shape[0]) if slices is None else np.asarray(slices, dtype=int)
        if self.slices.size == 0:
            raise ValueError("no slices to sample patches from")
        if mismatch_gap is not None:
            if labels is None:
                raise ValueError("mismatch_gap needs labels")
            check_gap(image.shape[0], mismatch_gap)
        self.mismatch_gap = mismatch_gap
        self.augment = augment
        self.jitter = jitter
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        """The random stream's state, for :meth:`set_state` (a resumed run continues it)."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        """Continue the random stream from :meth:`state`."""
        self.rng.bit_generator.state = state

    def _crop(self, volume: np.ndarray, z, y, x) -> np.ndarray:
        py, px = self.patch
        return volume[z[:, None, None], y[:, None, None] + np.arange(py)[None, :, None],
                      x[:, None, None] + np.arange(px)[None, None, :]]

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """A batch: ``image`` (B, 1, P, P) float32 standardised and, when given, ``target``
        (B, P, P) int64 class indices (-1 ignored), ``weight`` (B, P, P), ``mismatched``
        (B, P, P) and ``z`` / ``z_mismatched`` (B,), the slices they come from."""
        rng = self.rng
        z = rng.choice(self.slices, batch)
        y = rng.integers(0, self.unit.shape[1] - self.patch[0] + 1, batch)
        x = rng.integers(0, self.unit.shape[2] - self.patch[1] + 1, batch)
        parts = {"image": self._crop(self.unit, z, y, x)}
        if self.target is not None:
            parts["target"] = self._crop(self.target, z, y, x)
        if self.weights is not None:
            parts["weight"] = self._crop(self.weights, z, y, x)
        if self.mismatch_gap is not None:
            z_other = distant_slices(z, self.unit.shape[0], self.mismatch_gap, rng)
            parts["mismatched"] = self._crop(self.target, z_other, y, x)
        if self.augment:
            flip_y, flip_x = rng.random(batch) < 0.5, rng.random(batch) < 0.5
            turns = rng.integers(0, 4, batch) if self.patch[0] == self.patch[1] else np.zeros(batch, int)
            for key, arr in parts.items():
                arr = np.where(flip_y[:, None, None], arr[:, ::-1], arr)
                arr = np.where(flip_x[:, None, None], arr[:, :, ::-1], arr)
                parts[key] = np.stack([np.rot90(a, k) for a, k in zip(arr, turns)])
        if self.jitter is not None:
            parts["image"] = self.jitter(parts["image"], rng)
        parts["image"] = self.normalizer.standardize(parts["image"])[:, None]
        out = {k: np.ascontiguousarray(v) for k, v in parts.items()}
        out["z"] = z
        if self.mismatch_gap is not None:
            out["z_mismatched"] = z_other
        return out


def check_gap(depth: int, gap: int) -> None:
    """Raise ``ValueError`` unless every slice of a ``depth``-slice volume has a partner ``gap`` away."""
    if not isinstance(gap, (int, np.integer)) or gap < 1:
        raise ValueError(f"mismatch gap must be a positive integer, got {gap!r}")
    if depth < 2 * gap:
        raise ValueError(f"a volume of {depth} slices has no slice pair {gap} or more apart for every "
                         f"slice; use a gap of at most {depth // 2}")


def distant_slices(z: np.ndarray, depth: int, gap: int, rng: np.random.Generator) -> np.ndarray:
    """For each slice index in ``z``, a random slice at least ``gap`` slices away (uniform).

    Slice ``z`` has ``max(0, z - gap + 1)`` partners below and ``max(0, depth - z - gap)``
    above; one uniform draw over their union picks the partner, for all of ``z`` at once.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = np.array([0, 5, 9])
    >>> other = distant_slices(z, depth=10, gap=4, rng=rng)
    >>> bool(np.all(np.abs(other - z) >= 4)), bool(np.all((other >= 0) & (other < 10)))
    (True, True)
    """
    check_gap(depth, gap)
    z = np.asarray(z, dtype=np.int64)
    below = np.maximum(z - gap + 1, 0)
    above = np.maximum(depth - z - gap, 0)
    u = np.floor(rng.random(z.shape) * (below + above)).astype(np.int64)
    return np.where(u < below, u, z + gap + (u - below))
