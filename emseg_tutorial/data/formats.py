"""Volume files: one lazy reader and one atomic block writer per format, and the checks.

A volume is named by a *spec* string:

* ``stack.tif`` / ``stack.tiff``: a (multi-page) TIFF; the voxel size is taken from ImageJ
  metadata (``spacing`` and the x/y resolution) when present;
* ``FILE.h5:dataset`` (also ``.hdf5``, ``.hdf``): one dataset of an HDF5 file (needs the
  optional ``h5py``: ``pip install emseg-tutorial[hdf5]``); a ``voxel_size`` attribute is used
  when present;
* a folder: its 2D ``.tif``/``.tiff``/``.png`` slices in natural order (``2.tif`` before
  ``10.tif``);
* ``volume.npy``: a NumPy array;
* ``vol.zarr`` / ``vol.zarr:name``: an OME-Zarr image or a zarr array (needs the optional
  ``zarr``: ``pip install emseg-tutorial[scale]``), read chunk by chunk and written chunk by
  chunk, resumably (:mod:`.zarr_format`).

**Reading.** :func:`open_volume` opens any spec lazily and returns a :class:`LazyVolume` whose
:meth:`~LazyVolume.read` gives slices ``z0:z1`` as a new array:

* an uncompressed, contiguous TIFF (what ImageJ, tifffile and this module write) and a
  C-ordered ``.npy`` are memory-mapped *per request* (``numpy.memmap`` at the data offset that
  ``tifffile`` / the ``.npy`` header report): only the requested slices are mapped, copied and
  unmapped again, so the resident memory stays one block however much of the file was read;
* other TIFFs (compressed, tiled) are decoded page by page;
* ``FILE.h5:dataset`` reads hyperslabs through h5py;
* a folder of 2D slices reads one file per slice.

:func:`read_image`, :func:`read_labels` and :func:`read_volume` are the in-memory readers: they
open the spec, read every slice and check the result (:func:`check_image`, :func:`check_labels`).

**Writing.** :func:`open_writers` writes ``(Z, Y, X)`` or ``(C, Z, Y, X)`` arrays block by block
along z to temporary files beside the targets, renamed over them only when everything was
written: TIFF pages are appended with an ImageJ header for the final shape (so Fiji sees the
voxel size), ``.npy`` blocks are written at their offset after the header, HDF5 hyperslabs go
into a dataset chunked by slice. :func:`write_volume` is one such write of a whole array,
:func:`write_volumes` one commit of several (an image and its labels: both or neither).
Each output gets its own temporary file (``mkstemp``), whose mode is the old file's or
``0666`` less the umask; a failed write (a full disk) is a one-line :class:`VolumeError` and
leaves the old file as it was. An existing HDF5 group is never replaced.

**Checking outputs** before long work: :func:`check_outputs` (every command's one check: a
known format, a parent that is a writable folder, an existing ``.h5`` that is really HDF5,
no output the same file or HDF5 dataset as an input or another output, paths resolved) and
:func:`check_output_folder` (a ``train``/``adapt`` output folder and the files it will hold).

**Damaged files** are refused, never read short: a TIFF whose page chain breaks off (tifffile
only logs it) names the pages found and announced, a ``.tif``/``.npy`` with fewer bytes than
its header describes says so. A folder of slices is read in the common dtype of all its slices.

**Stored dtype** (:func:`storage_dtype`, the one rule of every write): uint8, uint16 and
float32 are stored as they are; bool as uint8; other integers (int64 labels, say) as uint16
when their values fit ``0..65535``, else, in ``.npy`` and HDF5, as they are (TIFF refuses
them); other floats as float32 in TIFF (ImageJ's float) and as they are elsewhere. Integers are
never rounded: a value that does not fit the stored dtype is a :class:`VolumeError`.

Every check raises :class:`~.errors.VolumeError` (a ``ValueError``) whose one-line message
starts with the file and says what was expected and what arrived.

Examples
--------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> spec = os.path.join(folder, "v.tif")
>>> with open_writers([(spec, (3, 4, 5), np.uint8)], voxel_size=(30.0, 6.0, 6.0)) as (w,):
...     for z in range(3):
...         w.write(np.full((1, 4, 5), z, np.uint8))
>>> with open_volume(spec) as vol:
...     vol.shape, vol.voxel_size, vol.read(1, 3)[:, 0, 0].tolist()
((3, 4, 5), (30.0, 6.0, 6.0), [1, 2])
>>> write_volume(os.path.join(folder, "l.npy"), np.array([[[0, 1], [2, 4]]]))  # int64 codes
>>> read_image(os.path.join(folder, "l.npy"))[0].dtype
dtype('uint16')
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .._validate import InputError, check_finite, check_real_dtype, check_same_shape, check_volume_array
from ..labels import MAX_CODE, check_codes
from .errors import VolumeError
from .units import to_nm
from .volume import Volume
from .zarr_format import ZarrImage, ZarrOutput, check_zarr_output, is_zarr, split_zarr

TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
SLICE_SUFFIXES = (".tif", ".tiff", ".png")
NPY_SUFFIX = ".npy"

__all__ = ["LazyVolume", "ArrayVolume", "SliceWriter", "open_volume", "open_dataset", "open_writers",
           "read_image", "read_labels", "read_volume", "read_slice", "write_volume", "check_image",
           "check_labels", "check_pair", "check_output_spec", "check_outputs", "check_output_folder", "write_volumes", "storage_dtype", "atomic_write", "split_spec",
           "natural_key", "VolumeError"]


# --------------------------------------------------------------------------- specs


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


# --------------------------------------------------------------------------- checks


@contextmanager
def _naming_the_file() -> Iterator[None]:
    """Turn the :class:`~emseg_tutorial._validate.InputError` of a shared check into a VolumeError."""
    try:
        yield
    except VolumeError:
        raise
    except InputError as err:
        raise VolumeError(str(err)) from None


def check_image(data: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``data`` as a ``(Z, Y, X)`` image after checking it, else raise VolumeError.

    The checks are :mod:`emseg_tutorial._validate`'s: 2D or 3D, not empty, real numbers, no NaN
    or infinity. A 2D image becomes ``(1, Y, X)``.

    Examples
    --------
    >>> check_image(np.zeros((4, 5))).shape
    (1, 4, 5)
    >>> check_image(np.array([[np.nan]]), "img.tif")
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: img.tif: 1 values are NaN or infinite
    """
    with _naming_the_file():
        data = check_volume_array(data, name)
        check_real_dtype(data, name)
        check_finite(data, name)
    return data[None] if data.ndim == 2 else data


def check_labels(data: np.ndarray, name: str = "labels", max_code: int = MAX_CODE) -> np.ndarray:
    """Return ``data`` as ``(Z, Y, X)`` uint8 label codes after checking, else raise VolumeError.

    The check is :func:`emseg_tutorial.labels.check_codes` (whole numbers in ``0..max_code``,
    at least one labelled pixel); a 2D array becomes ``(1, Y, X)``.

    Examples
    --------
    >>> check_labels(np.array([[0, 1], [2, 4]])).dtype
    dtype('uint8')
    >>> check_labels(np.array([[5]]))
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: labels: codes must be 0-4 (0 unlabelled, 1 boundary, 2 cytoplasm, 3 mitochondria, 4 glia); found 5
    """
    with _naming_the_file():
        codes = check_codes(data, name, max_code=max_code)
    return codes[None] if codes.ndim == 2 else codes


def check_pair(image: np.ndarray, labels: np.ndarray, image_name: str = "image",
               labels_name: str = "labels") -> None:
    """Raise VolumeError unless ``image`` and ``labels`` have the same shape (names both).

    Examples
    --------
    >>> check_pair(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)), "img.tif", "lab.tif")
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: lab.tif: shape (1, 2, 3) does not match img.tif's shape (1, 2, 2) (they must have the same shape)
    """
    with _naming_the_file():
        check_same_shape(image, labels, image_name, labels_name)


# --------------------------------------------------------------------------- lazy reading


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
        with _naming_the_file():
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


def _tiff_voxel_size(tif) -> tuple[float, float, float] | None:
    """Voxel size in nm from ImageJ metadata (``spacing`` + x/y resolution, in the ``unit`` Fiji
    wrote: nm, µm/micron/um, Å; :mod:`.units`), else from OME-TIFF ``PhysicalSize*``, or None."""
    meta = tif.imagej_metadata or {}
    page = tif.pages[0]
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
    except KeyError:
        return _ome_voxel_size(tif)
    unit = meta.get("unit")
    if "spacing" not in meta or to_nm(1.0, unit) is None:
        return _ome_voxel_size(tif)
    y = yres[1] / yres[0] if yres[0] else None
    x = xres[1] / xres[0] if xres[0] else None
    if not y or not x:
        return None
    return to_nm(meta["spacing"], unit), to_nm(y, unit), to_nm(x, unit)


def _ome_voxel_size(tif) -> tuple[float, float, float] | None:
    """``PhysicalSizeZ/Y/X`` of an OME-TIFF (unit attributes default to µm) in nm, or None."""
    xml = getattr(tif, "ome_metadata", None)
    if not xml:
        return None
    import xml.etree.ElementTree as ET

    try:
        pixels = next(e for e in ET.fromstring(xml).iter() if e.tag.endswith("Pixels"))
    except (ET.ParseError, StopIteration):
        return None
    sizes = [to_nm(pixels.get(f"PhysicalSize{a}"), pixels.get(f"PhysicalSize{a}Unit", "µm")) for a in "ZYX"]
    return tuple(sizes) if all(s is not None for s in sizes) else None


class _TiffLog(logging.Handler):
    """Collects what tifffile logs (it only *logs* a broken page chain, then reads fewer pages)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_log() -> Iterator[_TiffLog]:
    log = logging.getLogger("tifffile")
    handler = _TiffLog()
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def _expected_pages(tif) -> int | None:
    """Pages the file's own metadata announces (ImageJ ``images``, tifffile's shape), or None."""
    meta = tif.imagej_metadata
    if meta and meta.get("images"):
        return int(meta["images"])
    shaped = tif.shaped_metadata
    if shaped and shaped[0].get("shape"):
        shape = list(shaped[0]["shape"])
        plane = 3 if tif.pages[0].samplesperpixel > 1 else 2  # RGB: (Y, X, S) per page
        return int(np.prod(shape[:-plane])) if len(shape) > plane else 1
    return None


def _check_not_cut_short(tif, path: Path, log: _TiffLog) -> None:
    """Refuse a TIFF whose page chain breaks off (a file cut short), naming pages found and expected.

    tifffile only logs a broken page chain and then reads the pages before it; the log is
    collected by :func:`_tifffile_log` (so nothing reaches stderr) and turned into an error.
    """
    broken = [re.sub(r"^<[^>]*>\s*", "", m) for m in log.messages
              if "invalid page offset" in m or "corrupted" in m or "truncated" in m]
    if not broken:
        return
    broken.sort(key=lambda m: "page offset" not in m)  # the cause first
    found, expected = len(tif.pages), _expected_pages(tif)
    says = f"{found} of the {expected} pages its header announces are readable" if expected else \
        f"{found} pages readable, then a broken page link"
    raise VolumeError(f"{path}: file is cut short or damaged: {says} (tifffile: {broken[0]}); copy or save it again")


def _open_tiff(path: Path, name: str) -> LazyVolume:
    import tifffile

    with _tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as err:  # tifffile raises many types for broken files
            raise VolumeError(f"{path}: cannot be read as a TIFF stack ({err.__class__.__name__}: "
                              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
        try:
            series = tif.series[0]
            _check_not_cut_short(tif, path, log)
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
        voxel = _tiff_voxel_size(tif)
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
    return check_image(data, os.fspath(spec)), voxel


def read_labels(spec: str | os.PathLike, max_code: int = MAX_CODE) -> np.ndarray:
    """Read and check a label volume; returns uint8 codes ``(Z, Y, X)``.

    :func:`open_volume`, every slice read, then :func:`check_labels`
    (:func:`emseg_tutorial.labels.check_codes`).
    """
    data, _ = _read_whole(spec)
    return check_labels(data, os.fspath(spec), max_code=max_code)


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
        check_pair(img, lab, os.fspath(image), os.fspath(labels))
    return Volume(image=img, labels=lab, voxel_size=voxel, name=Path(split_spec(image)[0]).name)


# --------------------------------------------------------------------------- writing


def _who(spec, label: str | None) -> str:
    """How a message names an output or input: ``"--out pred.tif"`` or ``"pred.tif"``."""
    return f"{label} {os.fspath(spec)}" if label else os.fspath(spec)


def _check_file_target(path: Path, who: str) -> None:
    """Raise VolumeError unless a file can be written at ``path`` (renamed into place there).

    ``path`` must not be a folder; its nearest existing parent must be a folder (not a file)
    in which a file can be created (tried with a temporary file, so read-only file systems
    and permissions are both seen).
    """
    if path.is_dir():
        raise VolumeError(f"{who}: is a folder; name a file inside it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise VolumeError(f"{who}: {parent} is a file, not a folder, so nothing can be written under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".emseg-probe.", dir=parent)
    except OSError as err:
        raise VolumeError(f"{who}: cannot write in {parent} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def _hdf5_target_problem(file, dataset: str) -> str | None:
    """Why ``dataset`` of the open HDF5 ``file`` cannot be (re)written, or None when it can."""
    import h5py

    try:
        found = file.get(dataset)
    except (KeyError, TypeError, ValueError):
        found = None
    if found is not None and not isinstance(found, h5py.Dataset):
        return (f"{dataset!r} is an HDF5 group in the file, not a dataset; it is never replaced "
                f"(name a new dataset, e.g. '{dataset.rstrip('/')}/pred')")
    parts = dataset.strip("/").split("/")
    for i in range(1, len(parts)):
        above = "/".join(parts[:i])
        if isinstance(file.get(above), h5py.Dataset):
            return f"{above!r} is a dataset, so it cannot hold {dataset!r}"
    return None


def check_output_spec(spec: str | os.PathLike, label: str | None = None) -> tuple[Path, str | None]:
    """Check that ``spec`` names an output :func:`write_volume` can write; return its parts.

    Call it before long work so a typo in an output name fails at once. Checked: a known
    format (``.tif``, ``FILE.h5:dataset``, ``.npy``), not a folder, a parent that is a folder
    (or can be made) where files can be written, and for HDF5 an existing file that is really
    HDF5 whose named object, if any, is a dataset (a group is never deleted).

    Parameters
    ----------
    spec : str or path
        The output spec.
    label : str, optional
        The argument it came from (``"--out"``), named in messages.

    Raises
    ------
    VolumeError
        One line naming the output (and ``label``) and the problem.

    Examples
    --------
    >>> check_output_spec("out.h5:pred")
    (PosixPath('out.h5'), 'pred')
    >>> check_output_spec("results", "--out")
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: --out results: has no file suffix; name a .tif, .npy or FILE.h5:DATASET file
    """
    path, dataset = split_spec(spec)
    who = _who(spec, label)
    suffix = path.suffix.lower()
    if is_zarr(path):
        check_zarr_output(*split_zarr(spec))
        return path, dataset
    if path.is_dir():
        raise VolumeError(f"{who}: is a folder; name a file inside it (.tif, .npy or FILE.h5:DATASET)")
    if not suffix:
        raise VolumeError(f"{who}: has no file suffix; name a .tif, .npy or FILE.h5:DATASET file")
    if suffix not in TIFF_SUFFIXES + HDF5_SUFFIXES + (NPY_SUFFIX,):
        raise VolumeError(f"{who}: unknown output format {suffix!r}; use .tif, FILE.h5:dataset or .npy")
    if suffix in HDF5_SUFFIXES and dataset is None:
        raise VolumeError(f"{who}: name the dataset to write as '{path}:DATASET'")
    _check_file_target(path, who)
    if suffix in HDF5_SUFFIXES and path.is_file():
        h5py = import_h5py(path)
        if not h5py.is_hdf5(path):
            raise VolumeError(f"{who}: {path} exists but is not an HDF5 file; remove it or choose another name")
        try:
            with h5py.File(path, "r") as f:
                problem = _hdf5_target_problem(f, dataset)
        except OSError as err:
            raise VolumeError(f"{who}: {path} cannot be read as HDF5 ({err})") from None
        if problem:
            raise VolumeError(f"{who}: {problem}")
    return path, dataset


def _labelled(specs) -> list[tuple[str | None, str]]:
    """``{label: spec}`` or a sequence of specs (or ``(label, spec)`` pairs) as pairs; None specs dropped."""
    if specs is None:
        return []
    items = specs.items() if isinstance(specs, dict) else (s if isinstance(s, tuple) else (None, s) for s in specs)
    return [(label, os.fspath(spec)) for label, spec in items if spec is not None]


def _same_key(spec: str) -> tuple[str, str | None]:
    """What two specs share when they name the same data: the resolved file and the dataset."""
    path, dataset = split_spec(spec)
    return os.path.realpath(path), dataset.strip("/") if dataset else None


def _refuse_same(outputs: list[tuple[str | None, str]], inputs: list[tuple[str | None, str]]) -> None:
    """Raise VolumeError if an output is an input or another output (resolved paths, HDF5 datasets)."""
    taken = {_same_key(spec): (label, spec) for label, spec in inputs}
    for label, spec in outputs:
        key = _same_key(spec)
        if key in taken:
            other, other_spec = taken[key]
            kind = "input" if (other, other_spec) in inputs else "output"
            raise VolumeError(f"{_who(spec, label)}: is also the {kind} {_who(other_spec, other)}; writing it "
                              f"would replace that data; give each output its own file")
        taken[key] = (label, spec)


def check_outputs(outputs, inputs=None) -> None:
    """Check every output of a command before any work starts (the one check all commands use).

    Each output passes :func:`check_output_spec`, and none may be the same file (or the same
    HDF5 dataset) as an input or another output: paths are resolved, so ``./a.tif`` and a
    link to it are the same file.

    Parameters
    ----------
    outputs, inputs : dict or sequence
        ``{label: spec}`` (label = the argument, named in messages) or a sequence of specs;
        None specs are skipped.

    Raises
    ------
    VolumeError
        The first problem, in one line naming the output.

    Examples
    --------
    >>> check_outputs({"--out": "a.tif"}, {"--image": "./a.tif"})
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: --out a.tif: is also the input --image ./a.tif; writing it would replace that data; give each output its own file
    """
    outputs, inputs = _labelled(outputs), _labelled(inputs)
    _refuse_same(outputs, inputs)
    for label, spec in outputs:
        check_output_spec(spec, label)


def check_output_folder(folder: str | os.PathLike, label: str | None = None, files: Sequence[str] = (),
                        inputs=None) -> Path:
    """Check an output folder and the files a command will write in it, before any work starts.

    The folder must not be a file; when missing, its nearest existing parent must be a folder
    (it is made by the first write, so a failed command leaves nothing); files must be writable
    there; none of ``files`` may be an input (``inputs`` as in :func:`check_outputs`) or a folder.

    Returns
    -------
    pathlib.Path
        The folder.

    Examples
    --------
    >>> import os, tempfile
    >>> check_output_folder(os.path.join(tempfile.mkdtemp(), "run"), "--out", ["model.pt"]).name
    'run'
    >>> check_output_folder(__file__, "--out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: --out .../formats.py: exists and is a file, not a folder
    """
    out = Path(folder)
    who = _who(folder, label)
    if out.exists() and not out.is_dir():
        raise VolumeError(f"{who}: exists and is a file, not a folder")
    targets = [(f"{label or 'output'} file", os.fspath(out / name)) for name in files]
    _refuse_same(targets, _labelled(inputs))
    _check_file_target(out / (files[0] if files else ".probe"), who)
    for name in files:
        if (out / name).is_dir():
            raise VolumeError(f"{who}: {out / name} is a folder; it must be free for the output file")
    return out


_UINT16 = np.iinfo(np.uint16)


def storage_dtype(dtype, spec: str | os.PathLike, value_range: tuple[float, float] | None = None) -> np.dtype:
    """The dtype a write of ``dtype`` values to ``spec`` stores; the one rule of every writer.

    * uint8, uint16, float32: as they are; bool: uint8;
    * other integers: uint16 when the values fit ``0..65535`` (when ``value_range`` is not
      given, the values are assumed to fit and each block written is checked); otherwise the
      integer dtype itself in ``.npy`` and HDF5, and a :class:`VolumeError` for TIFF (ImageJ
      stores no other integers);
    * other floats: float32 in TIFF, as they are in ``.npy`` and HDF5.

    Examples
    --------
    >>> storage_dtype(np.int64, "labels.tif"), storage_dtype(np.int64, "labels.npy", (0, 4))
    (dtype('uint16'), dtype('uint16'))
    >>> storage_dtype(np.int64, "ids.h5:ids", (0, 16777217)), storage_dtype(np.float64, "p.tif")
    (dtype('int64'), dtype('float32'))
    """
    dtype = np.dtype(dtype)
    path, _ = split_spec(spec)
    tiff = path.suffix.lower() in TIFF_SUFFIXES
    if dtype == bool:
        return np.dtype(np.uint8)
    if dtype.kind == "f":
        return np.dtype(np.float32) if tiff else dtype.newbyteorder("=")
    if dtype.kind in "iu":
        if dtype in (np.uint8, np.uint16):
            return dtype.newbyteorder("=")
        if value_range is None or (value_range[0] >= 0 and value_range[1] <= _UINT16.max):
            return np.dtype(np.uint16)
        if tiff:
            raise VolumeError(f"{path}: {dtype} values {value_range[0]}..{value_range[1]} do not fit uint16, and a "
                              f"TIFF (ImageJ) holds no wider integers; write .npy or FILE.h5:dataset instead")
        return dtype.newbyteorder("=")
    raise VolumeError(f"{path}: cannot store dtype {dtype}; expected integers, floats or bool")


def _temp_beside(path: Path) -> Path:
    """An empty temporary file in ``path``'s folder (made if missing), unique to this call.

    Its mode is what the renamed file should have: an existing ``path``'s own mode, else
    ``0666`` less the process umask (``mkstemp`` makes ``0600``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    if path.is_file():
        mode = path.stat().st_mode & 0o7777
    else:
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
    os.chmod(tmp, mode)
    return Path(tmp)


def _write_failed(spec, err: OSError) -> VolumeError:
    """The one-line error of a write the system refused (disk full, file too large, ...)."""
    reason = err.strerror if err.strerror else f"disk full or file size limit: {err}"
    return VolumeError(f"{os.fspath(spec)}: could not be written ({reason}); any file already there is unchanged")


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    If ``write`` fails, ``path`` is left as it was and the temporary file is removed.

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> atomic_write(target, lambda tmp: open(tmp, "w").write("done"))
    >>> open(target).read()
    'done'
    """
    path = Path(path)
    try:
        tmp = _temp_beside(path)
    except OSError as err:
        raise _write_failed(path, err) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise _write_failed(path, err) from None
    except RuntimeError as err:  # torch.save reports a failed write as a RuntimeError
        if "writ" not in str(err).lower():
            raise
        raise _write_failed(path, OSError(str(err).splitlines()[0])) from None
    finally:
        if tmp.exists():
            tmp.unlink()


class SliceWriter:
    """Writes one ``(Z, Y, X)`` or ``(C, Z, Y, X)`` array in consecutive z blocks.

    Made by :func:`open_writers`; call :meth:`write` with blocks ``(n, Y, X)`` (or
    ``(C, n, Y, X)``) in z order until all ``Z`` slices are written. ``dtype`` is the stored
    dtype (:func:`storage_dtype`); blocks are converted to it, and integer values that do not
    fit it raise :class:`VolumeError` (they are never wrapped or rounded).
    """

    def __init__(self, spec: str, shape: tuple[int, ...], dtype):
        self.spec, self.shape = spec, tuple(int(s) for s in shape)
        if len(self.shape) not in (3, 4):
            raise VolumeError(f"{spec}: can only write (Z, Y, X) or (C, Z, Y, X) arrays, got shape {self.shape}")
        self.channels = self.shape[0] if len(self.shape) == 4 else None
        self.nz = self.shape[-3]
        self.dtype = np.dtype(dtype)
        self.written = 0

    def write(self, block: np.ndarray) -> None:
        """Append the next slices; ``block`` is ``(n, Y, X)`` or ``(C, n, Y, X)``."""
        block = np.asarray(block)
        expected = self.shape[:-3] + (None,) + self.shape[-2:]
        if block.ndim != len(self.shape) or any(e is not None and e != s for e, s in zip(expected, block.shape)):
            raise ValueError(f"{self.spec}: block of shape {block.shape} does not fit an array of shape {self.shape}")
        n = block.shape[-3]
        if self.written + n > self.nz:
            raise ValueError(f"{self.spec}: {self.written + n} slices written, the array has {self.nz}")
        try:
            self._write(self._stored(block), self.written)
        except OSError as err:
            raise _write_failed(self.spec, err) from None
        self.written += n

    def _stored(self, block: np.ndarray) -> np.ndarray:
        """``block`` in the stored dtype, after checking that integer storage holds its values."""
        if self.dtype.kind in "iu" and block.size and not np.can_cast(block.dtype, self.dtype):
            info = np.iinfo(self.dtype)
            lo, hi = block.min(), block.max()
            if block.dtype.kind == "f" and not np.array_equal(block, np.round(block)):
                raise VolumeError(f"{self.spec}: stores {self.dtype} integers, got non-integer {block.dtype} values")
            if lo < info.min or hi > info.max:
                raise VolumeError(f"{self.spec}: values {lo}..{hi} do not fit the stored {self.dtype} "
                                  f"({info.min}..{info.max}); give open_writers the value range as a fourth "
                                  f"item of the target, or use write_volume")
        return block.astype(self.dtype, copy=False)

    def _write(self, block: np.ndarray, z0: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Flush; called by :func:`open_writers`."""


class _TiffWriter(SliceWriter):
    def __init__(self, spec, tmp: Path, shape, dtype, voxel_size):
        import tifffile

        super().__init__(spec, shape, dtype)
        z_first = (self.nz,) + ((self.channels,) if self.channels else ()) + self.shape[-2:]
        axes = "ZCYX" if self.channels else "ZYX"
        meta = {"axes": axes}
        self._kwargs = {}
        if voxel_size is not None:
            z, y, x = (float(v) for v in voxel_size)
            meta.update(spacing=z, unit="nm")
            self._kwargs["resolution"] = (1.0 / x, 1.0 / y)
        self._description = tifffile.imagej_description(z_first, **meta)
        big = int(np.prod(self.shape)) * self.dtype.itemsize > 2**32 - 2**25
        self._tw = tifffile.TiffWriter(tmp, bigtiff=big)
        self._first = True

    def _write(self, block, z0):
        # one 2D greyscale page at a time, channels inside slices: ImageJ's ZCYX page order
        pages = block.transpose(1, 0, 2, 3).reshape((-1,) + self.shape[-2:]) if self.channels else block
        for page in pages:
            self._tw.write(np.ascontiguousarray(page), contiguous=True, photometric="minisblack", metadata=None,
                           description=self._description if self._first else None, **self._kwargs)
            self._first = False

    def close(self):
        self._tw.close()


class _NpyWriter(SliceWriter):
    def __init__(self, spec, tmp: Path, shape, dtype):
        super().__init__(spec, shape, dtype)
        self._f = open(tmp, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._f, header)
        self._offset = self._f.tell()
        self._f.truncate(self._offset + int(np.prod(self.shape)) * self.dtype.itemsize)

    def _write(self, block, z0):
        slice_bytes = self.shape[-2] * self.shape[-1] * self.dtype.itemsize
        for c, part in enumerate(block if self.channels else [block]):
            self._f.seek(self._offset + (c * self.nz + z0) * slice_bytes)
            self._f.write(np.ascontiguousarray(part).tobytes())

    def close(self):
        self._f.close()


class _Hdf5Writer(SliceWriter):
    def __init__(self, spec, file, dataset: str, shape, dtype, voxel_size):
        super().__init__(spec, shape, dtype)
        problem = _hdf5_target_problem(file, dataset)
        if problem:
            raise VolumeError(f"{spec}: {problem}")
        if dataset in file:
            del file[dataset]  # a dataset (never a group): replaced
        chunks = (1,) * (len(self.shape) - 2) + self.shape[-2:]
        self._ds = file.create_dataset(dataset, shape=self.shape, dtype=self.dtype, chunks=chunks,
                                       compression="gzip")
        if voxel_size is not None:
            self._ds.attrs["voxel_size"] = np.asarray(voxel_size, dtype=float)

    def _write(self, block, z0):
        self._ds[..., z0:z0 + block.shape[-3], :, :] = block


class _ZarrWriter(SliceWriter):
    """An OME-Zarr image written in place chunk by chunk (:class:`.zarr_format.ZarrOutput`).

    Unlike the other writers it is resumable rather than all-or-nothing: with a ``job`` key,
    slices a previous run wrote and marked are reported by :meth:`is_written` and can be
    passed over with :meth:`skip`; the image is marked complete when all slices are written.
    """

    def __init__(self, spec, shape, dtype, voxel_size, job=None):
        super().__init__(spec, shape, dtype)
        self.output = ZarrOutput.create(spec, self.shape, self.dtype, voxel_size, job)

    def is_written(self, z0: int, z1: int) -> bool:
        """Whether slices ``z0:z1`` are already on disk (written by this run or a resumed one)."""
        return self.output.is_written(z0, z1)

    def skip(self, n: int) -> None:
        """Pass over the next ``n`` slices, already written (:meth:`is_written`)."""
        if not self.is_written(self.written, self.written + n):
            raise ValueError(f"{self.spec}: slices {self.written}:{self.written + n} are not written; cannot skip them")
        self.written += n

    def _write(self, block, z0):
        self.output.write_at(block, z0)

    def close(self):
        if self.written == self.nz and not getattr(self, "_finished", False):
            self.output.finish()
            self._finished = True


@contextmanager
def open_writers(targets: Sequence[tuple], voxel_size: tuple[float, float, float] | None = None,
                 job: str | None = None) -> Iterator[list[SliceWriter]]:
    """Writers for several output arrays, committed together when the ``with`` block succeeds.

    Parameters
    ----------
    targets : sequence of (spec, shape, dtype) or (spec, shape, dtype, value_range)
        Output spec (``.tif``, ``FILE.h5:dataset``, ``.npy``), array shape ``(Z, Y, X)`` or
        ``(C, Z, Y, X)``, dtype of the values, and optionally their ``(min, max)``; the stored
        dtype is :func:`storage_dtype`'s. Several HDF5 datasets of the same file share one
        temporary copy of it (other datasets already in the file are kept).
    voxel_size : tuple of float, optional
        ``(z, y, x)`` nm stored in TIFF, HDF5 and OME-Zarr metadata.
    job : str, optional
        Key of the computation (zarr outputs only): a zarr written before with the same key
        is resumed, its finished slices reported by the writer's ``is_written``.

    Yields
    ------
    list of SliceWriter
        One per target, in order. Every slice must be written before the block ends.

    Notes
    -----
    Each output goes to a temporary file beside it; on success all are renamed over their
    targets; on any error the temporary files are removed and the targets are unchanged.
    Zarr outputs are the exception: written in place chunk by chunk (each chunk atomically),
    marked complete at the end, so an interrupted write is resumed or refused, never read
    as data (:mod:`.zarr_format`).
    """
    specs = []
    for target in targets:
        spec, shape, dtype, *rest = target
        specs.append((split_spec(spec), os.fspath(spec), shape, dtype, rest[0] if rest else None))
    check_outputs([spec for _, spec, _, _, _ in specs])  # also: no two targets share a file or dataset
    stored = [storage_dtype(dtype, spec, value_range) for _, spec, _, dtype, value_range in specs]
    tmps: dict[Path, Path] = {}
    h5files: dict[Path, object] = {}
    writers: list[SliceWriter] = []
    try:
        for ((path, dataset), spec, shape, _, _), dtype in zip(specs, stored):
            suffix = path.suffix.lower()
            if is_zarr(path):
                writers.append(_ZarrWriter(spec, shape, dtype, voxel_size, job))
                continue
            try:
                if path not in tmps:
                    tmps[path] = _temp_beside(path)
                tmp = tmps[path]
                if suffix in TIFF_SUFFIXES:
                    writers.append(_TiffWriter(spec, tmp, shape, dtype, voxel_size))
                elif suffix == NPY_SUFFIX:
                    writers.append(_NpyWriter(spec, tmp, shape, dtype))
                else:
                    if path not in h5files:
                        h5py = import_h5py(path)
                        if path.exists():
                            shutil.copyfile(path, tmp)
                        h5files[path] = h5py.File(tmp, "a")
                    writers.append(_Hdf5Writer(spec, h5files[path], dataset, shape, dtype, voxel_size))
            except OSError as err:  # making the temporary file, copying an HDF5 file
                raise _write_failed(spec, err) from None
        yield writers
        for w in writers:
            if w.written != w.nz:
                raise ValueError(f"{w.spec}: only {w.written} of {w.nz} slices were written")
        for name, closing in [(w.spec, w) for w in writers] + list(h5files.items()):
            try:
                closing.close()
            except OSError as err:  # the last bytes are written when a file is closed
                raise _write_failed(name, err) from None
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for w in writers:
            try:
                w.close()
            except Exception:
                pass
        for f in h5files.values():
            try:
                f.close()
            except Exception:
                pass
        for tmp in tmps.values():
            if tmp.exists():
                tmp.unlink()


def write_volume(spec: str | os.PathLike, data: np.ndarray,
                 voxel_size: tuple[float, float, float] | None = None) -> None:
    """Write a ``(Z, Y, X)`` array to a tif stack, ``FILE.h5:dataset`` or ``.npy``, atomically.

    One :func:`open_writers` block writing every slice, so the stored dtype follows
    :func:`storage_dtype` (told the value range of integer data). TIFF files are ImageJ
    hyperstacks so Fiji opens them with the right voxel size. An HDF5 file that exists keeps
    its other datasets; the named one is replaced.

    Parameters
    ----------
    spec : str or path
        Target file (``.tif``/``.tiff``, ``FILE.h5:dataset`` or ``.npy``).
    data : ndarray
        ``(Z, Y, X)`` (a 2D array is one slice) or ``(C, Z, Y, X)`` (class probabilities;
        stored in TIFF as an ImageJ hyperstack with channels).
    voxel_size : tuple of float, optional
        ``(z, y, x)`` in nm, stored in the file's metadata.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "v.tif")
    >>> write_volume(path, np.zeros((2, 8, 8), np.uint8), voxel_size=(30.0, 6.0, 6.0))
    >>> read_image(path)[1]
    (30.0, 6.0, 6.0)
    """
    write_volumes([(spec, data)], voxel_size)


def write_volumes(items: Sequence[tuple[str | os.PathLike, np.ndarray]],
                  voxel_size: tuple[float, float, float] | None = None) -> None:
    """Write several arrays (an image and its labels, say) as one commit: all files or none.

    Each ``(spec, data)`` is written as :func:`write_volume` would; the targets are renamed
    into place only when every one was written, so a failure leaves no half pair.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_volumes([(os.path.join(d, "i.tif"), np.zeros((1, 4, 4), np.uint8)),
    ...                (os.path.join(d, "l.tif"), np.ones((1, 4, 4), np.uint8))])
    >>> sorted(os.listdir(d))
    ['i.tif', 'l.tif']
    """
    arrays, targets = [], []
    for spec, data in items:
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        value_range = (data.min(), data.max()) if data.dtype.kind in "iu" and data.size else None
        arrays.append(data)
        targets.append((spec, data.shape, data.dtype, value_range))
    with open_writers(targets, voxel_size) as writers:
        for writer, data in zip(writers, arrays):
            writer.write(data)
