"""Volume specs: how a string names a volume, and the suffixes of every format.

A volume is named by a *spec* string:

* ``stack.tif`` / ``stack.tiff``: a (multi-page) TIFF;
* ``FILE.h5:dataset`` (also ``.hdf5``, ``.hdf``): one dataset of an HDF5 file (needs the
  optional ``h5py``: ``pip install emseg-tutorial[hdf5]``);
* a folder: its 2D ``.tif``/``.tiff``/``.png`` slices in natural order (``2.tif`` before
  ``10.tif``);
* ``volume.npy``: a NumPy array;
* ``vol.zarr`` / ``vol.zarr:name``: an OME-Zarr image or a zarr array (:mod:`.zarr_format`).

Readers (:mod:`.readers`), output checks (:mod:`.outputs`) and writers (:mod:`.writers`)
all split a spec here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import VolumeError

TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
SLICE_SUFFIXES = (".tif", ".tiff", ".png")
NPY_SUFFIX = ".npy"

__all__ = ["split_spec", "natural_key", "import_h5py", "TIFF_SUFFIXES", "HDF5_SUFFIXES", "SLICE_SUFFIXES",
           "NPY_SUFFIX"]


def split_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """Split ``"FILE.h5:dataset"`` into ``(Path("FILE.h5"), "dataset")``; other specs get None.

    Examples
    --------
    >>> split_spec("data/vol.h5:raw")
    (PosixPath('data/vol.h5'), 'raw')
    >>> split_spec("stack.tif")
    (PosixPath('stack.tif'), None)
    """
    text = os.fspath(spec)
    match = re.match(r"^(.*\.(?:h5|hdf5|hdf|zarr)):(.+)$", text, flags=re.IGNORECASE)
    if match:
        return Path(match.group(1)), match.group(2)
    return Path(text), None


def natural_key(path: str | os.PathLike) -> list:
    """Sort key putting ``2.tif`` before ``10.tif`` (digit runs compare as numbers).

    Examples
    --------
    >>> sorted(["s10.tif", "s2.tif", "s1.tif"], key=natural_key)
    ['s1.tif', 's2.tif', 's10.tif']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", Path(path).name)]


def import_h5py(path: str | os.PathLike):
    """The ``h5py`` module, else a :class:`VolumeError` naming ``path`` and how to install it."""
    try:
        import h5py
    except ImportError:
        raise VolumeError(f"{path}: reading HDF5 needs h5py; install it with "
                          f"'pip install emseg-tutorial[hdf5]' (or 'pip install h5py')") from None
    return h5py
