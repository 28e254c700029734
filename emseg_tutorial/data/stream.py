"""Read and write volumes a few slices at a time, for stacks larger than memory.

:func:`open_volume` opens any spec of :mod:`.io` lazily and returns a :class:`LazyVolume`
whose :meth:`~LazyVolume.read` gives slices ``z0:z1`` as a new array:

* an uncompressed, contiguous TIFF (what ImageJ, tifffile and this project write) and a
  C-ordered ``.npy`` are memory-mapped *per request* (``numpy.memmap`` at the data offset that
  ``tifffile`` / the ``.npy`` header report): only the requested slices are mapped, copied and
  unmapped again, so the resident memory stays one block however much of the file has been
  read (a single map of the whole file would count every page touched towards the RSS);
* other TIFFs (compressed, tiled) are decoded page by page (``TiffFile.series[0].pages``);
* ``FILE.h5:dataset`` reads hyperslabs through h5py;
* a folder of 2D slices reads one file per slice.

:func:`open_writers` writes ``(Z, Y, X)`` or ``(C, Z, Y, X)`` arrays block by block along z
to temporary files beside the targets, renamed over them only when everything was written
(the same guarantee as :func:`.io.atomic_write`): TIFF pages are appended one slice at a time
with an ImageJ header for the final shape (so Fiji and :func:`.io.read_image` see the voxel
size), ``.npy`` blocks are written at their offset after the header, HDF5 hyperslabs go into
a dataset chunked by slice.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> folder = tempfile.mkdtemp()
>>> spec = os.path.join(folder, "v.tif")
>>> with open_writers([(spec, (3, 4, 5), np.uint8)], voxel_size=(30.0, 6.0, 6.0)) as (w,):
...     for z in range(3):
...         w.write(np.full((1, 4, 5), z, np.uint8))
>>> with open_volume(spec) as vol:
...     vol.shape, vol.voxel_size, vol.read(1, 3)[:, 0, 0].tolist()
((3, 4, 5), (30.0, 6.0, 6.0), [1, 2])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .io import (HDF5_SUFFIXES, SLICE_SUFFIXES, TIFF_SUFFIXES, VolumeError, _import_h5py, _natural_key,
                 _tiff_voxel_size, check_output_spec, split_spec)


# --------------------------------------------------------------------------- reading


class LazyVolume:
    """A ``(Z, Y, X)`` image on disk, read block by block along z.

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
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3:
            raise VolumeError(f"{name}: expected a 2D (Y, X) or 3D (Z, Y, X) image, got shape {shape}")
        if 0 in shape:
            raise VolumeError(f"{name}: the image is empty (shape {shape})")
        dtype = np.dtype(dtype)
        if dtype == bool or not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise VolumeError(f"{name}: expected real numbers, got dtype {dtype}")
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

    def close(self):
        self._file.close()


class _FolderVolume(LazyVolume):
    method = "files"

    def __init__(self, name, files: list[Path]):
        self._files = files
        first = self._load(files[0])
        super().__init__(name, (len(files),) + first.shape, first.dtype)

    def _load(self, f: Path) -> np.ndarray:
        from .io import read_slice

        img = read_slice(f)
        if hasattr(self, "shape") and img.shape != self.shape[1:]:
            raise VolumeError(f"{f}: slice shape {img.shape} differs from {self._files[0].name}'s {self.shape[1:]}")
        return img

    def _read(self, z0, z1):
        return np.stack([self._load(f) for f in self._files[z0:z1]])


def _open_tiff(path: Path, name: str) -> LazyVolume:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as err:
        raise VolumeError(f"{path}: cannot be read as a TIFF stack ({err.__class__.__name__}: {err})") from None
    try:
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
    except Exception as err:
        raise VolumeError(f"{path}: cannot be read as .npy ({err})") from None
    if not fortran and len(shape) in (2, 3) and not dtype.hasobject:
        return _MappedVolume(name, path, offset, shape, dtype)
    return ArrayVolume(np.load(path, mmap_mode="r"), name)


def _open_hdf5(path: Path, dataset: str, name: str) -> LazyVolume:
    h5py = _import_h5py(path)
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
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES), key=_natural_key)
        if not files:
            raise VolumeError(f"{path}: folder holds no slices ({', '.join(SLICE_SUFFIXES)} files)")
        return _FolderVolume(name, files)
    if dataset is not None or suffix in HDF5_SUFFIXES:
        if dataset is None:
            raise VolumeError(f"{path}: name the dataset inside the HDF5 file as '{path}:DATASET'")
        return _open_hdf5(path, dataset, name)
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(path, name)
    if suffix == ".npy":
        return _open_npy(path, name)
    raise VolumeError(f"{path}: unknown format {suffix!r}; use a .tif stack, FILE.h5:dataset, a folder of "
                      f"2D slices or .npy")


# --------------------------------------------------------------------------- writing


def _storage_dtype(dtype, suffix: str) -> np.dtype:
    """The dtype actually stored: TIFF keeps uint8/uint16/float32 (as :func:`.io.write_volume`)."""
    dtype = np.dtype(dtype)
    if suffix in TIFF_SUFFIXES and dtype not in (np.uint8, np.uint16, np.float32):
        return np.dtype(np.uint16) if np.issubdtype(dtype, np.unsignedinteger) and dtype.itemsize <= 2 \
            else np.dtype(np.float32)
    return dtype


class SliceWriter:
    """Writes one ``(Z, Y, X)`` or ``(C, Z, Y, X)`` array in consecutive z blocks.

    Made by :func:`open_writers`; call :meth:`write` with blocks ``(n, Y, X)`` (or
    ``(C, n, Y, X)``) in z order until all ``Z`` slices are written.
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
        self._write(block.astype(self.dtype, copy=False), self.written)
        self.written += n

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
        if dataset in file:
            del file[dataset]
        chunks = (1,) * (len(self.shape) - 2) + self.shape[-2:]
        self._ds = file.create_dataset(dataset, shape=self.shape, dtype=self.dtype, chunks=chunks,
                                       compression="gzip")
        if voxel_size is not None:
            self._ds.attrs["voxel_size"] = np.asarray(voxel_size, dtype=float)

    def _write(self, block, z0):
        self._ds[..., z0:z0 + block.shape[-3], :, :] = block


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def open_writers(targets: Sequence[tuple[str | os.PathLike, tuple[int, ...], object]],
                 voxel_size: tuple[float, float, float] | None = None) -> Iterator[list[SliceWriter]]:
    """Writers for several output arrays, committed together when the ``with`` block succeeds.

    Parameters
    ----------
    targets : sequence of (spec, shape, dtype)
        Output spec (``.tif``, ``FILE.h5:dataset``, ``.npy``), array shape ``(Z, Y, X)`` or
        ``(C, Z, Y, X)``, dtype. Several HDF5 datasets of the same file share one temporary
        copy of it (other datasets already in the file are kept).
    voxel_size : tuple of float, optional
        ``(z, y, x)`` nm stored in TIFF and HDF5 metadata.

    Yields
    ------
    list of SliceWriter
        One per target, in order. Every slice must be written before the block ends.

    Notes
    -----
    Each output goes to a temporary file beside it; on success all are renamed over their
    targets; on any error the temporary files are removed and the targets are unchanged.
    """
    specs = [(split_spec(spec), os.fspath(spec), shape, dtype) for spec, shape, dtype in targets]
    for spec in (s for _, s, _, _ in specs):
        check_output_spec(spec)
    tmps: dict[Path, Path] = {}
    h5files: dict[Path, object] = {}
    writers: list[SliceWriter] = []
    try:
        for (path, dataset), spec, shape, dtype in specs:
            suffix = path.suffix.lower()
            if path not in tmps:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
                os.close(fd)
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
                tmps[path] = Path(tmp)
            tmp = tmps[path]
            dtype = _storage_dtype(dtype, suffix)
            if suffix in TIFF_SUFFIXES:
                writers.append(_TiffWriter(spec, tmp, shape, dtype, voxel_size))
            elif suffix == ".npy":
                writers.append(_NpyWriter(spec, tmp, shape, dtype))
            else:
                if path not in h5files:
                    h5py = _import_h5py(path)
                    if path.exists():
                        shutil.copyfile(path, tmp)
                    h5files[path] = h5py.File(tmp, "a")
                writers.append(_Hdf5Writer(spec, h5files[path], dataset, shape, dtype, voxel_size))
        yield writers
        for w in writers:
            if w.written != w.nz:
                raise ValueError(f"{w.spec}: only {w.written} of {w.nz} slices were written")
        for w in writers:
            w.close()
        for f in h5files.values():
            f.close()
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
