"""Writing volumes: one atomic block writer per format, and the one rule of the stored dtype.

:func:`open_writers` writes ``(Z, Y, X)`` or ``(C, Z, Y, X)`` arrays block by block along z to
temporary files beside the targets (:func:`emseg_tutorial.store.atomic.temp_beside`), renamed
over them only when everything was written: TIFF pages are appended with an ImageJ header for
the final shape (so Fiji sees the voxel size, in µm: :data:`TIFF_UNIT`), ``.npy`` blocks are
written at their offset after the header, HDF5 hyperslabs go into a dataset chunked by slice,
zarr chunks in place (resumably, :mod:`.zarr_format`). :func:`write_volume` is one such write of a whole array,
:func:`write_volumes` one commit of several (an image and its labels: both or neither). Each
output's temporary file has the old file's mode or ``0666`` less the umask; a failed write (a
full disk) is a one-line :class:`~.errors.VolumeError` and leaves the old file as it was. An
existing HDF5 group is never replaced. Outputs are checked first (:func:`.outputs.check_outputs`).

**Stored dtype** (:func:`storage_dtype`, the one rule of every write): uint8, uint16 and
float32 are stored as they are; bool as uint8; other integers (int64 labels, say) as uint16
when their values fit ``0..65535``, else, in ``.npy`` and HDF5, as they are (TIFF refuses
them); other floats as float32 in TIFF (ImageJ's float) and as they are elsewhere. Integers are
never rounded: a value that does not fit the stored dtype is a :class:`~.errors.VolumeError`.

Examples
--------
>>> import os, tempfile
>>> from emseg_tutorial.data.readers import open_volume, read_image
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

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..interrupt import deferred
from ..store.atomic import temp_beside, write_failure
from .errors import VolumeError
from .outputs import check_outputs, hdf5_target_problem
from .specs import NPY_SUFFIX, TIFF_SUFFIXES, import_h5py, split_spec
from .zarr_format import ZarrOutput, is_zarr

__all__ = ["SliceWriter", "open_writers", "write_volume", "write_volumes", "storage_dtype"]


_UINT16 = np.iinfo(np.uint16)
#: the unit of a TIFF's voxel size: ImageJ's description says ``unit=micron`` (``spacing`` in µm)
#: and the tags hold pixels per µm with ResolutionUnit MICROMETER (5, tifffile's; never INCH,
#: which ImageJ would convert to cm): what Fiji reads, and tifffile and the readers here
TIFF_UNIT = "micron"
NM_PER_UM = 1000.0


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



def _write_failed(spec, err: OSError) -> VolumeError:
    """The one-line error of a write the system refused (disk full, file too large, ...)."""
    return VolumeError(write_failure(spec, err))


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
        if self.dtype.kind == "f" and block.dtype.kind == "f" and block.size and self.dtype.itemsize < block.itemsize:
            finite = block[np.isfinite(block)]
            big, largest = (float(np.abs(finite).max()) if finite.size else 0.0), float(np.finfo(self.dtype).max)
            if big > largest:  # would become infinite: refused here, not reported as NaN later
                raise VolumeError(f"{self.spec}: values up to {big:g} do not fit the stored {self.dtype} "
                                  f"(largest {largest:g}); scale them, or write .npy or HDF5, which keep "
                                  f"{block.dtype}")
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
        if voxel_size is not None:  # in µm, one unit for ImageJ's description and the TIFF tags
            z, y, x = (float(v) / NM_PER_UM for v in voxel_size)
            meta.update(spacing=z, unit=TIFF_UNIT)
            self._kwargs.update(resolution=(1.0 / x, 1.0 / y), resolutionunit=tifffile.RESUNIT.MICROMETER)
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
        problem = hdf5_target_problem(file, dataset)
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

    def __init__(self, spec, shape, dtype, voxel_size, job=None, labels=False):
        super().__init__(spec, shape, dtype)
        self.output = ZarrOutput.create(spec, self.shape, self.dtype, voxel_size, job, labels=labels)

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
                 job: str | None = None, labels: Sequence[str | os.PathLike] = ()) -> Iterator[list[SliceWriter]]:
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
    labels : sequence of str or path
        The targets that hold label codes (zarr outputs only: written as NGFF label images,
        their pyramid levels by mode rather than mean).

    Yields
    ------
    list of SliceWriter
        One per target, in order. Every slice must be written before the block ends.

    Notes
    -----
    Each output goes to a temporary file beside it; on success all are renamed over their
    targets (a SIGINT or SIGTERM during the renames waits for them to end); on any error or
    interruption the temporary files are removed and the targets are unchanged.
    Zarr outputs are the exception: written in place chunk by chunk (each chunk atomically),
    marked complete at the end, so an interrupted write is resumed or refused, never read
    as data; one that replaces an existing zarr is written beside it and renamed over it at
    the end (:mod:`.zarr_format`).
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
                writers.append(_ZarrWriter(spec, shape, dtype, voxel_size, job,
                                           labels=spec in {os.fspath(t) for t in labels}))
                continue
            try:
                if path not in tmps:
                    tmps[path] = temp_beside(path)
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
        with deferred():  # a signal waits until every target is renamed: all of them or none
            for path, tmp in tmps.items():
                os.replace(tmp, path)
    finally:  # any exit, KeyboardInterrupt and Interrupted (SIGTERM) included: no temporary file stays
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
    >>> from emseg_tutorial.data.readers import read_image
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
        if data.ndim < 2:
            raise VolumeError(f"{spec}: expected a 2-D image or a 3-D volume, got shape {data.shape}")
        if 0 in data.shape:  # nothing a reader could read back as a volume
            raise VolumeError(f"{spec}: nothing to write: the volume has shape {data.shape} (an empty volume)")
        value_range = (data.min(), data.max()) if data.dtype.kind in "iu" and data.size else None
        arrays.append(data)
        targets.append((spec, data.shape, data.dtype, value_range))
    with open_writers(targets, voxel_size) as writers:
        for writer, data in zip(writers, arrays):
            writer.write(data)
