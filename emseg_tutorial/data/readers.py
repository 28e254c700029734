"""Reading volumes: one lazy reader per format, and the in-memory readers that check what they read.

:func:`open_volume` opens any spec (:mod:`.specs`) lazily and returns a :class:`LazyVolume`
whose :meth:`~LazyVolume.read` gives slices ``z0:z1`` as a new array:

* an uncompressed, contiguous TIFF (what ImageJ, tifffile and :mod:`.writers` write) and a
  C-ordered ``.npy`` are memory-mapped *per request* (``numpy.memmap`` at the data offset that
  ``tifffile`` / the ``.npy`` header report): only the requested slices are mapped, copied and
  unmapped again, so the resident memory stays one block however much of the file was read;
* other TIFFs (compressed, tiled) are decoded page by page;
* ``FILE.h5:dataset`` reads hyperslabs through h5py (a ``voxel_size`` attribute is used when
  present);
* a folder of 2D slices reads one file per slice, in the common dtype of all its slices;
* a zarr array or OME-Zarr image is read chunk by chunk (:mod:`.zarr_format`).

The voxel size of a TIFF comes from its ImageJ or OME metadata (:mod:`.tiff`). Damaged files
are refused, never read short: a TIFF whose page chain breaks off names the pages found and
announced (:func:`.tiff.check_not_cut_short`), a ``.tif``/``.npy`` with fewer bytes than its
header describes says so.

:func:`read_image`, :func:`read_labels` and :func:`read_volume` are the in-memory readers: they
open the spec, read every slice and check the result (:func:`emseg_tutorial._validate.check_image`,
:func:`emseg_tutorial.labels.check_labels`). Every problem is a :class:`~.errors.VolumeError`
(a ``ValueError``) whose one-line message starts with the file.

Examples
--------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> np.save(os.path.join(folder, "img.npy"), np.zeros((2, 3, 4), np.float32))
>>> np.save(os.path.join(folder, "lab.npy"), np.ones((2, 3, 4), np.uint8))
>>> vol = read_volume(os.path.join(folder, "img.npy"), os.path.join(folder, "lab.npy"))
>>> vol.shape, vol.labels.dtype, vol.name
((2, 3, 4), dtype('uint8'), 'img.npy')
>>> read_labels(os.path.join(folder, "img.npy"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
emseg_tutorial.data.errors.VolumeError: .../img.npy: every pixel is 0 (unlabelled); nothing to train or evaluate on
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._validate import check_image, check_pair, check_real_dtype, check_volume_array
from ..labels import MAX_CODE, check_labels
from .errors import VolumeError, as_volume_error
from .specs import HDF5_SUFFIXES, NPY_SUFFIX, SLICE_SUFFIXES, TIFF_SUFFIXES, import_h5py, natural_key, split_spec
from .tiff import check_not_cut_short, tifffile_log, tiff_voxel_size
from .volume import Volume
from .zarr_format import ZarrImage, is_zarr

__all__ = ["LazyVolume", "ArrayVolume", "open_volume", "open_dataset", "read_slice", "read_image", "read_labels",
           "read_volume", "read_probabilities"]


class LazyVolume:
    """A ``(Z, Y, X)`` image on disk, read block by block along z.

    Opening checks the shape (2D or 3D, not empty) and the dtype (real numbers) with the
    checks of :mod:`emseg_tutorial._validate`; NaN and infinity are found only when read.

    Attributes
    ----------
    shape : tuple of int
        ``(Z, Y, X)`` (a 2D image is one slice).
    dtype : numpy.dtype
        Data type of the stored values (native byte order after reading).
    voxel_size : tuple of float or None
        ``(z, y, x)`` in nm when the file says.
    name : str
        The spec, for messages.
    method : str
        How slices are read (``"memmap"``, ``"pages"``, ``"hdf5"``, ``"files"``, ``"array"``).
    """

    method = "array"

    def __init__(self, name: str, shape: tuple[int, ...], dtype, voxel_size=None):
        dtype = np.dtype(dtype)
        probe = np.broadcast_to(np.zeros((), dtype), tuple(int(s) for s in shape))  # no memory: zero strides
        with as_volume_error():
            check_volume_array(probe, name)
            check_real_dtype(probe, name)
        shape = probe.shape if probe.ndim == 3 else (1,) + probe.shape
        self.name, self.shape, self.dtype, self.voxel_size = name, shape, dtype.newbyteorder("="), voxel_size

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Size of the whole image in memory."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def read(self, z0: int, z1: int) -> np.ndarray:
        """Slices ``z0:z1`` as a new ``(z1 - z0, Y, X)`` array in native byte order."""
        if not 0 <= z0 < z1 <= self.shape[0]:
            raise IndexError(f"{self.name}: slices {z0}:{z1} outside 0:{self.shape[0]}")
        block = np.asarray(self._read(z0, z1)).reshape((z1 - z0,) + self.shape[1:])
        return block.astype(self.dtype, copy=False)

    def read_all(self) -> np.ndarray:
        """Every slice, as one ``(Z, Y, X)`` array."""
        return self.read(0, self.shape[0])

    def read_region(self, z: slice = slice(None), y: slice = slice(None), x: slice = slice(None)) -> np.ndarray:
        """The sub-volume ``[z, y, x]`` (slices with steps allowed) as a new array.

        Examples
        --------
        >>> ArrayVolume(np.arange(24).reshape(2, 3, 4)).read_region(slice(1, 2), slice(0, 3, 2), slice(1, 3))
        array([[[13, 14],
                [21, 22]]])
        """
        rows = range(*z.indices(self.shape[0]))
        if len(rows) == 0:
            return np.empty((0, len(range(*y.indices(self.shape[1]))), len(range(*x.indices(self.shape[2])))),
                            self.dtype)
        z0, z1 = min(rows), max(rows) + 1
        block = np.asarray(self._read_region(z0, z1, y, x)).astype(self.dtype, copy=False)
        return np.ascontiguousarray(block[::rows.step])  # z0..z1 holds rows, in either order

    def _read_region(self, z0: int, z1: int, y: slice, x: slice) -> np.ndarray:
        return self.read(z0, z1)[:, y, x]

    def _read(self, z0: int, z1: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handles."""

    def __enter__(self) -> "LazyVolume":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ArrayVolume(LazyVolume):
    """A :class:`LazyVolume` over an array already in memory (for tests and small volumes).

    Examples
    --------
    >>> ArrayVolume(np.zeros((2, 3, 4), np.uint8)).read(0, 1).shape
    (1, 3, 4)
    """

    def __init__(self, array: np.ndarray, name: str = "array", voxel_size=None):
        array = np.asarray(array)
        super().__init__(name, array.shape, array.dtype, voxel_size)
        self._array = array.reshape(self.shape)

    def _read(self, z0, z1):
        return np.array(self._array[z0:z1])


class _MappedVolume(LazyVolume):
    """Raw C-ordered data at a byte offset: each read maps only the requested slices."""

    method = "memmap"

    def __init__(self, name, path: Path, offset: int, shape, dtype, voxel_size=None):
        super().__init__(name, shape, np.dtype(dtype), voxel_size)
        self._path, self._offset, self._stored = path, int(offset), np.dtype(dtype)
        needed = self._offset + int(np.prod(self.shape)) * self._stored.itemsize
        size = path.stat().st_size
        if size < needed:
            raise VolumeError(f"{path}: file is cut short: {size} bytes, but its header describes "
                              f"{needed} ({self.shape} {self._stored.name} values from byte {self._offset}); "
                              f"copy or save it again")

    def _read(self, z0, z1):
        slice_bytes = self.shape[1] * self.shape[2] * self._stored.itemsize
        mapped = np.memmap(self._path, dtype=self._stored, mode="r", offset=self._offset + z0 * slice_bytes,
                           shape=(z1 - z0,) + self.shape[1:])
        block = np.array(mapped)
        del mapped  # the last reference: unmapped now, only the copy stays resident
        return block


class _TiffPagesVolume(LazyVolume):
    """A TIFF decoded page by page (compressed or tiled pages)."""

    method = "pages"

    def __init__(self, name, tif, series, shape, voxel_size):
        super().__init__(name, shape, series.dtype, voxel_size)
        self._tif, self._pages = tif, series.pages

    def _read(self, z0, z1):
        return np.stack([self._pages[z].asarray() for z in range(z0, z1)])

    def close(self):
        self._tif.close()


class _Hdf5Volume(LazyVolume):
    method = "hdf5"

    def __init__(self, name, file, dataset, voxel_size):
        super().__init__(name, dataset.shape, dataset.dtype, voxel_size)
        self._file, self._ds = file, dataset

    def _read(self, z0, z1):
        return self._ds[z0:z1] if self._ds.ndim == 3 else self._ds[()][None]

    def _read_region(self, z0, z1, y, x):
        return self._ds[z0:z1, y, x] if self._ds.ndim == 3 else self._ds[y, x][None]

    def close(self):
        self._file.close()


class _FolderVolume(LazyVolume):
    """A folder of 2D slices, one file per slice.

    Every file's header is read when the folder is opened: all slices must have one shape,
    and the volume's dtype is the common one of all slices (``numpy.result_type``: uint8
    and uint16 slices give uint16), so the streamed and the in-memory reads give the same
    values whatever the first slice holds.
    """

    method = "files"

    def __init__(self, name, files: list[Path]):
        self._files = files
        headers = [_slice_header(f) for f in files]
        shape = headers[0][0]
        for f, (other, _) in zip(files, headers):
            if other != shape:
                raise VolumeError(f"{f}: slice shape {other} differs from {files[0].name}'s {shape}")
        super().__init__(name, (len(files),) + shape, np.result_type(*{dt for _, dt in headers}))

    def _load(self, f: Path) -> np.ndarray:
        img = read_slice(f)
        if img.shape != self.shape[1:]:
            raise VolumeError(f"{f}: slice shape {img.shape} differs from {self._files[0].name}'s {self.shape[1:]}")
        return img.astype(self.dtype, copy=False)

    def _read(self, z0, z1):
        return np.stack([self._load(f) for f in self._files[z0:z1]])


class _ZarrVolume(LazyVolume):
    """A zarr array or OME-Zarr image (:class:`.zarr_format.ZarrImage`), read chunk by chunk."""

    method = "zarr"

    def __init__(self, name, image: ZarrImage):
        super().__init__(name, image.shape, image.dtype, image.voxel_size)
        self._image = image

    def _read(self, z0, z1):
        return self._image.read(z0, z1)

    def _read_region(self, z0, z1, y, x):
        return self._image.read_region(z0, z1, y, x)


def _slice_header(f: Path) -> tuple[tuple[int, int], np.dtype]:
    """Shape and dtype of one slice file, from its header when that is cheap (tif, grey png)."""
    if f.suffix.lower() == ".png":
        with open(f, "rb") as fh:
            head = fh.read(26)
        if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[25] == 0 and head[24] in (8, 16):
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            return (height, width), np.dtype(np.uint16 if head[24] == 16 else np.uint8)
    else:
        with _open_tiff(f, str(f)) as vol:
            if vol.shape[0] == 1:
                return tuple(vol.shape[1:]), vol.dtype
    img = read_slice(f)  # colour, palette or multi-page: read_slice decides
    return img.shape, img.dtype


def read_slice(f: str | os.PathLike) -> np.ndarray:
    """One 2D slice file of a folder stack (tif or png), as a 2D array; ``VolumeError`` otherwise."""
    f = Path(f)
    if f.suffix.lower() == ".png":
        from skimage.io import imread

        try:
            img = imread(f)
        except Exception as err:
            raise VolumeError(f"{f}: cannot be read as PNG ({err})") from None
    else:
        with _open_tiff(f, str(f)) as vol:
            img = vol.read_all()
    img = np.squeeze(img)
    if img.ndim != 2:
        raise VolumeError(f"{f}: a slice must be a 2D image, got shape {img.shape}")
    return img



def _open_tiff(path: Path, name: str) -> LazyVolume:
    import tifffile

    with tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as err:  # tifffile raises many types for broken files
            raise VolumeError(f"{path}: cannot be read as a TIFF stack ({err.__class__.__name__}: "
                              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
        try:
            series = tif.series[0]
            check_not_cut_short(tif, path, log)
        except VolumeError:
            tif.close()
            raise
        except Exception:  # reported below, with the other errors of an unusual layout
            series = None
    try:
        if series is None:
            series = tif.series[0]
        axes, shape = series.axes, list(series.shape)
        keep = [i for i, (a, n) in enumerate(zip(axes, shape)) if n > 1 or i >= len(shape) - 2]
        if "S" in axes and shape[axes.index("S")] > 1:
            raise VolumeError(f"{path}: RGB/multi-sample images are not EM volumes (axes {axes}, shape {tuple(shape)})")
        shape = tuple(shape[i] for i in keep)
        voxel = tiff_voxel_size(tif)
        offset = series.dataoffset
        if offset is not None and len(shape) in (2, 3):
            dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            tif.close()
            return _MappedVolume(name, path, offset, shape, dtype, voxel)
        pages = series.pages
        depth = shape[0] if len(shape) == 3 else 1
        if len(shape) in (2, 3) and len(pages) == depth and pages[0] is not None \
                and tuple(pages[0].shape) == tuple(shape[-2:]):
            return _TiffPagesVolume(name, tif, series, shape, voxel)
        data = series.asarray()  # unusual layout: read it whole (not streamed)
        tif.close()
        return ArrayVolume(np.squeeze(data) if data.ndim > 3 else data, name, voxel)
    except VolumeError:
        tif.close()
        raise
    except Exception as err:
        tif.close()
        raise VolumeError(f"{path}: cannot be read as a TIFF stack ({err.__class__.__name__}: {err})") from None


def _open_npy(path: Path, name: str) -> LazyVolume:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        if dtype.hasobject:
            raise VolumeError(f"{path}: holds Python objects (dtype {dtype}), not numbers; save a numeric "
                              f"array (np.save(path, array.astype(np.float32)))")
        if not fortran and len(shape) in (2, 3):
            return _MappedVolume(name, path, offset, shape, dtype)
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except VolumeError:
        raise
    except Exception as err:
        raise VolumeError(f"{path}: cannot be read as .npy ({err})") from None
    return ArrayVolume(array, name)


def open_dataset(path: str | os.PathLike, dataset: str, name: str | None = None) -> LazyVolume:
    """Open one dataset of an HDF5 file lazily (``open_volume("FILE.h5:dataset")`` without a spec).

    For files whose name has no HDF5 suffix (downloaded datasets) and for reading a region of
    a dataset (:meth:`LazyVolume.read_region` reads an HDF5 hyperslab).
    """
    path = Path(path)
    name = name or f"{path}:{dataset}"
    h5py = import_h5py(path)
    try:
        f = h5py.File(path, "r")
    except Exception as err:
        raise VolumeError(f"{path}: cannot be read as HDF5 ({err.__class__.__name__}: {err})") from None
    if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
        names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
        f.close()
        raise VolumeError(f"{path}: no dataset {dataset!r}; datasets in the file: {names}")
    ds = f[dataset]
    voxel = ds.attrs.get("voxel_size")
    voxel = tuple(float(v) for v in voxel) if voxel is not None and len(voxel) == 3 else None
    try:
        return _Hdf5Volume(name, f, ds, voxel)
    except VolumeError:
        f.close()
        raise


def open_volume(spec: str | os.PathLike) -> LazyVolume:
    """Open an image spec (tif, ``FILE.h5:dataset``, folder of slices, ``.npy``) without reading it.

    Raises
    ------
    VolumeError
        Missing file, unknown format, not 2D/3D, not numeric; the message names the file.
        NaN or infinite values are found only when the slices are read.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "v.npy")
    >>> np.save(p, np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    >>> with open_volume(p) as v:
    ...     v.method, v.shape, v.read(1, 2)[0, 0].tolist()
    ('memmap', (2, 3, 4), [12, 13, 14, 15])
    """
    name = os.fspath(spec)
    path, dataset = split_spec(spec)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if is_zarr(path):
        return _ZarrVolume(name, ZarrImage(spec))
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES), key=natural_key)
        if not files:
            raise VolumeError(f"{path}: folder holds no slices ({', '.join(SLICE_SUFFIXES)} files)")
        return _FolderVolume(name, files)
    if dataset is not None or suffix in HDF5_SUFFIXES:
        if dataset is None:
            raise VolumeError(f"{path}: name the dataset inside the HDF5 file as '{path}:DATASET'")
        return open_dataset(path, dataset, name)
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(path, name)
    if suffix == NPY_SUFFIX:
        return _open_npy(path, name)
    raise VolumeError(f"{path}: unknown format {suffix!r}; use a .tif stack, FILE.h5:dataset, a folder of "
                      f"2D slices or .npy")


# --------------------------------------------------------------------------- in-memory reading


def _read_whole(spec: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    with open_volume(spec) as vol:
        return vol.read_all(), vol.voxel_size


def read_image(spec: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Read and check an image volume; returns ``(array (Z, Y, X), voxel size or None)``.

    :func:`open_volume`, every slice read, then :func:`check_image`.
    """
    data, voxel = _read_whole(spec)
    with as_volume_error():
        return check_image(data, os.fspath(spec)), voxel


def read_labels(spec: str | os.PathLike, max_code: int = MAX_CODE) -> np.ndarray:
    """Read and check a label volume; returns uint8 codes ``(Z, Y, X)``.

    :func:`open_volume`, every slice read, then :func:`check_labels`
    (:func:`emseg_tutorial.labels.check_codes`).
    """
    data, _ = _read_whole(spec)
    with as_volume_error():
        return check_labels(data, os.fspath(spec), max_code=max_code)


def read_probabilities(spec: str | os.PathLike) -> np.ndarray:
    """Class probabilities as ``predict --probabilities`` writes them, class axis first.

    ``(C, Z, Y, X)`` from a ``.npy`` or ``FILE.h5:dataset``; an ImageJ hyperstack tif
    (``Z, C, Y, X``) is turned to ``(C, Z, Y, X)``; any other spec (a tif stack, a folder,
    zarr) is read as one class's ``(Z, Y, X)`` map by :func:`open_volume`. The values are
    checked where they are used (:func:`emseg_tutorial.metrics.evaluate`).

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "p.npy")
    >>> np.save(p, np.full((2, 1, 3, 4), 0.5, np.float32))
    >>> read_probabilities(p).shape
    (2, 1, 3, 4)
    """
    path, dataset = split_spec(spec)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    try:
        if suffix == NPY_SUFFIX and not path.is_dir():
            array = np.load(path, allow_pickle=False)
        elif dataset is not None or suffix in HDF5_SUFFIXES:
            if dataset is None:
                raise VolumeError(f"{path}: name the dataset inside the HDF5 file as '{path}:DATASET'")
            with import_h5py(path).File(path, "r") as f:
                if dataset not in f:
                    raise VolumeError(f"{path}: no dataset {dataset!r}")
                array = f[dataset][()]
        elif suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                array, axes = series.asarray(), series.axes
            if "C" in axes and array.ndim == 4:
                array = np.moveaxis(array, axes.index("C"), 0)
        else:
            array = None
    except VolumeError:
        raise
    except Exception as err:
        raise VolumeError(f"{path}: cannot be read as probabilities ({err.__class__.__name__}: {err})") from None
    if array is None or array.ndim not in (2, 3, 4):
        with open_volume(spec) as vol:
            return vol.read_all()
    return np.asarray(array)


def read_volume(image: str | os.PathLike, labels: str | os.PathLike | None = None) -> Volume:
    """Read an image (and optionally its labels) into a checked :class:`~.volume.Volume`.

    Parameters
    ----------
    image, labels : str or path
        Specs as described in the module docstring.

    Raises
    ------
    VolumeError
        Missing or unreadable file, wrong dimensions, NaN/inf, empty data, codes outside 0-4,
        or image and labels of different shapes; the message names the file.
    """
    img, voxel = read_image(image)
    lab = None
    if labels is not None:
        lab = read_labels(labels)
        with as_volume_error():
            check_pair(img, lab, os.fspath(image), os.fspath(labels))
    return Volume(image=img, labels=lab, voxel_size=voxel, name=Path(split_spec(image)[0]).name)
