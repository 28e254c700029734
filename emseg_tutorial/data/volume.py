"""The :class:`Volume` container: an image stack, its labels and its voxel size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Volume:
    """A 3D EM image stack with optional labels.

    Attributes
    ----------
    image : ndarray, (Z, Y, X)
        uint8 or float intensities; a 2D image is stored as ``(1, Y, X)``.
    labels : ndarray of uint8, (Z, Y, X), or None
        Codes 0-4 (see :mod:`emseg_tutorial.labels`).
    voxel_size : tuple of float or None
        ``(z, y, x)`` in nm, when known.
    name : str
        Where the volume came from (file name or generator), for messages and titles.
    extra : dict
        Anything else a source provides (for example synthetic cell ids).

    Examples
    --------
    >>> v = Volume(np.zeros((2, 4, 4), np.uint8), voxel_size=(30.0, 6.0, 6.0))
    >>> v.shape, v.anisotropy
    ((2, 4, 4), 5.0)
    """

    image: np.ndarray
    labels: np.ndarray | None = None
    voxel_size: tuple[float, float, float] | None = None
    name: str = "volume"
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` of the image."""
        return tuple(self.image.shape)

    @property
    def anisotropy(self) -> float | None:
        """z voxel size over xy voxel size (1 for isotropic), or None when unknown."""
        if self.voxel_size is None:
            return None
        return float(self.voxel_size[0]) / float(self.voxel_size[1])

    def slices(self, start: int, stop: int) -> "Volume":
        """The sub-volume of slices ``start:stop`` (views, not copies)."""
        labels = None if self.labels is None else self.labels[start:stop]
        return Volume(self.image[start:stop], labels, self.voxel_size, f"{self.name}[{start}:{stop}]")
