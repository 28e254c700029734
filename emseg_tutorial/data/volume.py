"""The :class:`Volume` container: an image stack, its labels, its voxel size and its normaliser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # imported where first needed: a Volume without predictions needs no torch
    from .normalize import Normalizer


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
    normalizer : Normalizer
        The volume's one intensity normaliser (see the property); not a constructor argument.

    Examples
    --------
    >>> v = Volume(np.zeros((2, 4, 4), np.uint8), voxel_size=(30.0, 6.0, 6.0))
    >>> v.shape, v.anisotropy
    ((2, 4, 4), 5.0)
    >>> v.slices(1, 2).normalizer is v.normalizer   # a part is standardised as the whole
    True
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

    @property
    def normalizer(self) -> Normalizer:
        """The :class:`~.normalize.Normalizer` of the whole image, computed on first use and kept.

        Every prediction of this volume, or of slices of it (:meth:`slices`, :meth:`take`),
        passes it on, so scores do not depend on which slices were predicted together. Computed
        once: an image changed in place afterwards keeps the old normaliser.
        """
        norm = self.__dict__.get("_normalizer")
        if norm is None:
            from .normalize import Normalizer

            norm = self.__dict__["_normalizer"] = Normalizer.from_volume(self.image)
        return norm

    def take(self, index, name: str | None = None) -> "Volume":
        """The sub-volume of slices ``index`` (a slice or integer indices), with this volume's
        normaliser: what held-out or every n-th slices of it are predicted with.

        Examples
        --------
        >>> v = Volume(np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2), name="v")
        >>> part = v.take(slice(None, None, 2))
        >>> part.shape, part.name, part.normalizer == v.normalizer
        ((2, 2, 2), 'v[::2]', True)
        """
        if name is None:
            name = f"{self.name}[{_index_text(index)}]"
        labels = None if self.labels is None else self.labels[index]
        part = Volume(self.image[index], labels, self.voxel_size, name)
        part.__dict__["_normalizer"] = self.normalizer
        whole, slices = self._whole()
        part.__dict__["_part_of"] = (whole, slices[index])
        return part

    def _whole(self) -> tuple["Volume", np.ndarray]:
        """The volume this one was taken from (itself when it was not) and which of its slices this is."""
        return self.__dict__.get("_part_of", (self, np.arange(self.shape[0])))

    def remapped(self, transform: Callable[[np.ndarray], np.ndarray], name: str | None = None) -> "Volume":
        """This volume with intensities ``transform(image)`` of the whole image it belongs to.

        An intensity remapping that depends on the volume's histogram (histogram matching) must
        see the whole volume: a part (:meth:`take`) is remapped as its whole volume and then
        taken again, so it equals the same slices of the remapped whole, normaliser included.

        Examples
        --------
        >>> v = Volume(np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2), name="v")
        >>> flip = lambda img: (img.max() - img).astype(np.uint8)   # depends on the whole volume
        >>> part = v.take(slice(None, None, 2)).remapped(flip)
        >>> bool((part.image == v.remapped(flip).image[::2]).all()), part.normalizer == v.remapped(flip).normalizer
        (True, True)
        """
        whole, slices = self._whole()
        name = name or f"{self.name}-remapped"
        out = Volume(np.asarray(transform(whole.image)), whole.labels, whole.voxel_size, name)
        return out if np.array_equal(slices, np.arange(whole.shape[0])) else out.take(slices, name)

    def slices(self, start: int, stop: int) -> "Volume":
        """The sub-volume of slices ``start:stop`` (views, not copies), with this volume's normaliser."""
        return self.take(slice(start, stop), f"{self.name}[{start}:{stop}]")


def _index_text(index) -> str:
    if isinstance(index, slice):
        parts = ["" if v is None else str(v) for v in (index.start, index.stop)]
        return ":".join(parts) + ("" if index.step is None else f":{index.step}")
    return ",".join(str(int(i)) for i in np.atleast_1d(index))
