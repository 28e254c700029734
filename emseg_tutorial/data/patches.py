"""From volumes to training batches: random 2D patches with flips, drawn where the network runs.

The network sees each volume standardised by its own mean and standard deviation (computed
once over the whole volume, after scaling to [0, 1]; :mod:`.normalize`). Augmentations that change intensities
(the paper's jitter, :mod:`.augment`) act on the [0, 1] values *before* that standardisation,
so a brighter or flatter patch stays brighter or flatter for the network.

:class:`PatchSampler` is the one sampler, on every device: it copies the [0, 1] volume, the
class indices (int8, widened after cropping) and the weight map to its ``device`` once, at
construction, and draws every batch there with torch ops and its own ``torch.Generator``:
slices, crop corners, flips, quarter turns and wrong-slice partners (:func:`distant_slices`)
become one index tensor per batch and one gather per volume. Nothing is read back to the host
while sampling, so on a GPU no batch is copied from the host (but for the elastic deformation
of :mod:`.augment`, off by default, which runs on the host).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> img = rng.integers(0, 255, (4, 40, 40), dtype=np.uint8)
>>> lab = rng.integers(1, 3, (4, 40, 40)).astype(np.uint8)
>>> sampler = PatchSampler(img, lab, patch=32, seed=0)
>>> batch = sampler.sample(2)
>>> tuple(batch["image"].shape), batch["target"].dtype, batch["image"].device.type
((2, 1, 32, 32), torch.int64, 'cpu')
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..devices import restore_generator
from .._validate import check_image
from .normalize import Normalizer, normalizer_of


#: Largest label code the sampler stores (its class indices are kept as int8).
MAX_CODE = 127


class PatchSampler:
    """Draw random ``patch x patch`` crops from chosen slices, with flips and 90-degree turns.

    Parameters
    ----------
    image : ndarray, (Z, Y, X), or None
        Raw image (any dtype; scaled and standardised by its :class:`~.normalize.Normalizer`).
        None samples label maps only (the paper's discriminator reads nothing else of the
        source): batches then have no ``image``, and nothing is scaled or copied for it.
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
        ``jitter(batch01, generator) -> batch01``: intensity augmentation of the ``(B, P, P)``
        [0, 1] patches (a tensor on ``device``), e.g. a :class:`~.augment.Jitter`.
    elastic : callable, optional
        ``elastic(patches, generator) -> patches``: a deformation of the cropped image, labels,
        weights and mismatched labels alike, before the jitter, e.g. an :class:`~.augment.Elastic`.
    seed : int
        Seed of the sampler's own random stream.
    mismatch_gap : int, optional
        Also return ``mismatched``: the labels of the same crop in a slice at least this many
        slices away (:func:`distant_slices`), the "wrong label map" of the conditional
        discriminator. Needs ``labels``.
    device : str or torch.device
        Where the volumes live and batches are drawn (``"cpu"``, ``"cuda"``, ...).
    normalizer : Normalizer, optional
        The volume's normaliser, shared with whatever else predicts this volume (the trainer
        passes the one its validation uses); default: ``image``'s own.

    Attributes
    ----------
    normalizer : Normalizer or None
        What standardises the patches (None without an image).
    generator : torch.Generator
        The sampler's random stream, on ``device`` (:meth:`state`, :meth:`set_state`).
    """

    def __init__(self, image: np.ndarray | None, labels: np.ndarray | None = None, weights: np.ndarray | None = None,
                 patch: int = 128, slices=None, augment: bool = True,
                 jitter: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 seed: int = 0, mismatch_gap: int | None = None, *, device: str | torch.device = "cpu",
                 normalizer: Normalizer | None = None,
                 elastic: Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]] | None = None):
        if image is None and labels is None:
            raise ValueError("a patch sampler needs an image, labels or both")
        if image is not None:
            image = check_image(image, "image")
        shape = image.shape if image is not None else np.shape(labels)
        if labels is not None and labels.shape != shape:
            raise ValueError(f"labels shape {labels.shape} does not match image shape {shape}")
        if weights is not None and weights.shape != shape:
            raise ValueError(f"weights shape {weights.shape} does not match image shape {shape}")
        if patch < 8:
            raise ValueError(f"patch must be at least 8 pixels, got {patch}")
        slices = np.arange(shape[0]) if slices is None else np.asarray(slices, dtype=int)
        if slices.size == 0:
            raise ValueError("no slices to sample patches from")
        if mismatch_gap is not None:
            if labels is None:
                raise ValueError("mismatch_gap needs labels")
            check_gap(shape[0], mismatch_gap)
        if labels is not None and labels.size and (labels.min() < 0 or labels.max() > MAX_CODE):
            raise ValueError(f"labels must be codes 0..{MAX_CODE}, got values {labels.min()}..{labels.max()}")
        self.device = torch.device(device)
        self.normalizer = None if image is None else normalizer_of(image, normalizer)
        self.shape = shape
        self.patch = (min(patch, shape[1]), min(patch, shape[2]))
        self.augment = augment
        self.jitter = jitter
        self.elastic = elastic
        self.mismatch_gap = mismatch_gap

        def put(array, dtype):
            return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, dtype)

        self.unit = None if image is None else put(self.normalizer.unit(image), torch.float32)
        # class indices -1..126 kept as int8 (an eighth of int64's memory), widened after cropping
        self.target = None if labels is None else put(labels.astype(np.int8) - np.int8(1), torch.int8)
        self.weights = None if weights is None else put(weights, torch.float32)
        self.slices = put(slices, torch.int64)
        #: flat offsets inside a slice of ``nx`` columns of each flip / turn of a crop, (m, py, px)
        self.moves = dihedral_offsets(*self.patch, shape[2], augment, self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def state(self) -> torch.Tensor:
        """The random stream's state (a CPU byte tensor on every device), for :meth:`set_state`."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor, saved_on: str | None = None) -> None:
        """Continue the random stream from :meth:`state`; a state drawn on a device of another
        kind (``saved_on``) is refused in one line (:func:`~emseg_tutorial.devices.restore_generator`)."""
        restore_generator(self.generator, state, saved_on, "patch stream")

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=self.generator, device=self.device)

    def _draw_moves(self, n: int) -> torch.Tensor:
        """Flat offset, from the crop's corner, of every pixel of ``n`` output patches: one random
        flip or turn each, picked from :attr:`moves` (one gather; the draws are two coin flips
        and, for square patches, a quarter turn)."""
        if not self.augment:
            return self.moves.expand(n, *self.patch)
        rand = lambda: torch.rand(n, generator=self.generator, device=self.device) < 0.5  # noqa: E731
        flip_y, flip_x = rand(), rand()
        pick = flip_y.long() * 2 + flip_x.long()
        if self.patch[0] == self.patch[1]:  # quarter turns only keep the shape of square patches
            pick = pick * 4 + self._randint(4, n)
        return self.moves[pick]

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        """A batch on the device: ``image`` (B, 1, P, P) float32 standardised (when there is an
        image) and, when given, ``target`` (B, P, P) int64 class indices (-1 ignored), ``weight``
        (B, P, P) float32,
        ``mismatched`` (B, P, P) int64, and ``z`` / ``z_mismatched`` (B,) int64, the slices
        they come from. Every tensor is contiguous."""
        nz, ny, nx = self.shape
        py, px = self.patch
        z = self.slices[self._randint(len(self.slices), batch)]
        y = self._randint(ny - py + 1, batch)[:, None, None]
        x = self._randint(nx - px + 1, batch)[:, None, None]
        plane = self._draw_moves(batch) + (y * nx + x)  # flat index inside a slice, flips and turns included

        def crop(volume: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:  # one gather per volume
            return torch.take(volume, zs[:, None, None] * (ny * nx) + plane)

        out = {} if self.unit is None else {"image": crop(self.unit, z)}
        if self.target is not None:
            out["target"] = crop(self.target, z).long()
        if self.weights is not None:
            out["weight"] = crop(self.weights, z)
        if self.mismatch_gap is not None:
            z_other = distant_slices(z, nz, self.mismatch_gap, self.generator)
            out["mismatched"] = crop(self.target, z_other).long()
        if self.elastic is not None:
            out = self.elastic(out, self.generator)
        if self.unit is not None:
            unit = out["image"] if self.jitter is None else self.jitter(out["image"], self.generator)
            out["image"] = self.normalizer.standardize(unit)[:, None].contiguous()
        out["z"] = z
        if self.mismatch_gap is not None:
            out["z_mismatched"] = z_other
        return out


def dihedral_offsets(py: int, px: int, nx: int, augment: bool = True, device="cpu") -> torch.Tensor:
    """Flat offsets ``a * nx + b`` from a crop's corner of every pixel of its flips and turns.

    Entry ``(2 * flip_rows + flip_cols) * 4 + k`` (square patches: 16 entries, each of the 8
    distinct flips and turns twice, so a uniform pick is uniform over them) or
    ``2 * flip_rows + flip_cols`` (rectangles: 4) holds, at output pixel ``(i, j)``, the crop pixel
    ``(a, b)`` of ``rot90(flipped, k)``: ``(a, b)`` = ``(i, j)``, ``(j, P-1-i)``, ``(P-1-i, P-1-j)`` or
    ``(P-1-j, i)`` for ``k`` = 0..3 (``np.rot90``'s convention), then ``a -> P-1-a`` for a row
    flip and ``b -> P-1-b`` for a column flip. Without ``augment``: the crop itself (one entry).

    Examples
    --------
    >>> m = dihedral_offsets(2, 2, nx=10)
    >>> m.shape, m[0].tolist(), m[1].tolist()
    (torch.Size([16, 2, 2]), [[0, 1], [10, 11]], [[1, 11], [0, 10]])
    """
    i = torch.arange(py, device=device)[:, None].expand(py, px)
    j = torch.arange(px, device=device)[None, :].expand(py, px)
    if not augment:
        return (i * nx + j)[None]
    turns = [(i, j), (j, py - 1 - i), (py - 1 - i, px - 1 - j), (px - 1 - j, i)] if py == px else [(i, j)]
    moves = [((py - 1 - a) if fy else a) * nx + ((px - 1 - b) if fx else b)
             for fy in (False, True) for fx in (False, True) for a, b in turns]
    return torch.stack(moves)


def check_gap(depth: int, gap: int) -> None:
    """Raise ``ValueError`` unless every slice of a ``depth``-slice volume has a partner ``gap`` away."""
    if not isinstance(gap, (int, np.integer)) or gap < 1:
        raise ValueError(f"mismatch gap must be a positive integer, got {gap!r}")
    if depth < 2 * gap:
        raise ValueError(f"a volume of {depth} slices has no slice pair {gap} or more apart for every "
                         f"slice; use a gap of at most {depth // 2}")


def distant_slices(z: torch.Tensor, depth: int, gap: int, generator: torch.Generator) -> torch.Tensor:
    """For each slice index in ``z``, a random slice at least ``gap`` slices away (uniform),
    drawn with ``generator`` on ``z``'s device.

    Slice ``z`` has ``max(0, z - gap + 1)`` partners below and ``max(0, depth - z - gap)``
    above; one uniform draw over their union picks the partner, for all of ``z`` at once.

    Examples
    --------
    >>> z = torch.tensor([0, 5, 9])
    >>> other = distant_slices(z, depth=10, gap=4, generator=torch.Generator().manual_seed(0))
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
