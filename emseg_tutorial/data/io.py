"""Reading, checking and writing EM volumes: tif stacks, folders of slices, HDF5, ``.npy``.

A volume is named by a *spec* string:

* ``stack.tif`` / ``stack.tiff``: a (multi-page) TIFF read with tifffile; the voxel size is
  taken from ImageJ metadata (``spacing`` and the x/y resolution) when present;
* ``FILE.h5:dataset`` (also ``.hdf5``, ``.hdf``): one dataset of an HDF5 file (needs the
  optional ``h5py``: ``pip install emseg-tutorial[hdf5]``); a ``voxel_size`` attribute is used
  when present;
* a folder: its 2D ``.tif``/``.tiff``/``.png`` slices in natural order (``2.tif`` before
  ``10.tif``);
* ``volume.npy``: a NumPy array.

Every check raises :class:`VolumeError` (a ``ValueError``) whose message starts with the file
and says what was expected and what arrived. Writes go to a temporary file in the target
folder that is renamed over the target only once complete, so a failed write never leaves a
half-written file.

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "v.tif")
>>> write_volume(path, np.zeros((2, 8, 8), np.uint8), voxel_size=(30.0, 6.0, 6.0))
>>> read_image(path)[1]
(30.0, 6.0, 6.0)
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import VolumeError
from .volume import Volume

MAX_CODE = 4
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
SLICE_SUFFIXES = (".tif", ".tiff", ".png")


# --------------------------------------------------------------------------- parsing specs


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
    match = re.match(r"^(.*\.(?:h5|hdf5|hdf)):(.+)$", text, flags=re.IGNORECASE)
    if match:
        return Path(match.group(1)), match.group(2)
    return Path(text), None


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _import_h5py(path: Path):
    try:
        import h5py
    except ImportError:
        raise VolumeError(f"{path}: reading HDF5 needs h5py; install it with "
                          f"'pip install emseg-tutorial[hdf5]' (or 'pip install h5py')") from None
    return h5py


# --------------------------------------------------------------------------- reading


def _read_tiff(path: Path) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            voxel = _tiff_voxel_size(tif)
    except Exception as err:  # tifffile raises many types for broken files
        raise VolumeError(f"{path}: cannot be read as a TIFF stack ({err.__class__.__name__}: {err})") from None
    return data, voxel


def _tiff_voxel_size(tif) -> tuple[float, float, float] | None:
    """Voxel size in nm from ImageJ metadata (``spacing`` + x/y resolution), or None."""
    meta = tif.imagej_metadata or {}
    page = tif.pages[0]
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
    except KeyError:
        return None
    if "spacing" not in meta or meta.get("unit") not in ("nm", "nanometer"):
        return None
    y = yres[1] / yres[0] if yres[0] else None
    x = xres[1] / xres[0] if xres[0] else None
    if not y or not x:
        return None
    return (float(meta["spacing"]), round(float(y), 6), round(float(x), 6))


def _read_hdf5(path: Path, dataset: str) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    h5py = _import_h5py(path)
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                names = []
                f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
                raise VolumeError(f"{path}: no dataset {dataset!r}; datasets in the file: {names}")
            data = f[dataset][()]
            voxel = f[dataset].attrs.get("voxel_size")
    except VolumeError:
        raise
    except Exception as err:
        raise VolumeError(f"{path}: cannot be read as HDF5 ({err.__class__.__name__}: {err})") from None
    voxel = tuple(float(v) for v in voxel) if voxel is not None and len(voxel) == 3 else None
    return data, voxel


def _read_folder(path: Path) -> tuple[np.ndarray, None]:
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES), key=_natural_key)
    if not files:
        raise VolumeError(f"{path}: folder holds no slices ({', '.join(SLICE_SUFFIXES)} files)")
    slices = []
    for f in files:
        img = read_slice(f)
        if slices and img.shape != slices[0].shape:
            raise VolumeError(f"{f}: slice shape {img.shape} differs from {files[0].name}'s {slices[0].shape}")
        slices.append(img)
    return np.stack(slices), None


def read_slice(f: Path) -> np.ndarray:
    """One 2D slice file of a folder stack (tif or png), as a 2D array; ``VolumeError`` otherwise."""
    if f.suffix.lower() == ".png":
        from skimage.io import imread

        try:
            img = imread(f)
        except Exception as err:
            raise VolumeError(f"{f}: cannot be read as PNG ({err})") from None
    else:
        img = _read_tiff(f)[0]
    img = np.squeeze(img)
    if img.ndim != 2:
        raise VolumeError(f"{f}: a slice must be a 2D image, got shape {img.shape}")
    return img


def _read_raw(spec: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float] | None, Path]:
    path, dataset = split_spec(spec)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    if path.is_dir():
        data, voxel = _read_folder(path)
    elif dataset is not None or path.suffix.lower() in HDF5_SUFFIXES:
        if dataset is None:
            raise VolumeError(f"{path}: name the dataset inside the HDF5 file as '{path}:DATASET'")
        data, voxel = _read_hdf5(path, dataset)
    elif path.suffix.lower() in TIFF_SUFFIXES:
        data, voxel = _read_tiff(path)
    elif path.suffix.lower() == ".npy":
        try:
            data, voxel = np.load(path, allow_pickle=False), None
        except Exception as err:
            raise VolumeError(f"{path}: cannot be read as .npy ({err})") from None
    else:
        raise VolumeError(f"{path}: unknown format {path.suffix!r}; use a .tif stack, "
                          f"FILE.h5:dataset, a folder of 2D slices or .npy")
    return data, voxel, path


# --------------------------------------------------------------------------- checks


def check_image(data: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``data`` as a ``(Z, Y, X)`` image after checking it, else raise VolumeError.

    A 2D image becomes ``(1, Y, X)``. Images must be non-empty, numeric and finite.

    Examples
    --------
    >>> check_image(np.zeros((4, 5))).shape
    (1, 4, 5)
    """
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise VolumeError(f"{name}: expected a 2D (Y, X) or 3D (Z, Y, X) image, got {data.ndim}D shape {data.shape}")
    if data.size == 0:
        raise VolumeError(f"{name}: the image is empty (shape {data.shape})")
    if data.dtype == bool or not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise VolumeError(f"{name}: expected real numbers, got dtype {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise VolumeError(f"{name}: {bad} pixels are NaN or infinite")
    return data


def check_labels(data: np.ndarray, name: str = "labels", max_code: int = MAX_CODE) -> np.ndarray:
    """Return ``data`` as ``(Z, Y, X)`` uint8 label codes after checking, else raise VolumeError.

    Codes must be whole numbers in ``0..max_code`` (0 = unlabelled).

    Examples
    --------
    >>> check_labels(np.array([[0, 1], [2, 4]])).dtype
    dtype('uint8')
    >>> check_labels(np.array([[5]]))
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: labels: codes must be 0-4 (0 unlabelled, 1 boundary, 2 cytoplasm, 3 mitochondria, 4 glia); found 5
    """
    data = check_image(data, name)
    if np.issubdtype(data.dtype, np.floating):
        if not np.array_equal(data, np.round(data)):
            raise VolumeError(f"{name}: label codes must be whole numbers, got non-integer floats")
    lo, hi = data.min(), data.max()
    if lo < 0 or hi > max_code:
        found = sorted(set(np.unique(data[(data < 0) | (data > max_code)]).tolist()))[:5]
        raise VolumeError(f"{name}: codes must be 0-{max_code} (0 unlabelled, 1 boundary, 2 cytoplasm, "
                          f"3 mitochondria, 4 glia); found {', '.join(str(int(v)) for v in found)}")
    if hi == 0:
        raise VolumeError(f"{name}: every pixel is 0 (unlabelled); nothing to train or evaluate on")
    return data.astype(np.uint8, copy=False)


def check_pair(image: np.ndarray, labels: np.ndarray, image_name: str = "image",
               labels_name: str = "labels") -> None:
    """Raise VolumeError unless ``image`` and ``labels`` have the same shape."""
    if image.shape != labels.shape:
        raise VolumeError(f"{labels_name}: shape {labels.shape} does not match {image_name}'s shape {image.shape}")


# --------------------------------------------------------------------------- public readers


def read_image(spec: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Read and check an image volume; returns ``(array (Z, Y, X), voxel size or None)``."""
    data, voxel, path = _read_raw(spec)
    return check_image(data, str(spec)), voxel


def read_labels(spec: str | os.PathLike, max_code: int = MAX_CODE) -> np.ndarray:
    """Read and check a label volume; returns uint8 codes ``(Z, Y, X)``."""
    data, _, _ = _read_raw(spec)
    return check_labels(data, str(spec), max_code=max_code)


def read_volume(image: str | os.PathLike, labels: str | os.PathLike | None = None) -> Volume:
    """Read an image (and optionally its labels) into a checked :class:`Volume`.

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
        check_pair(img, lab, str(image), str(labels))
    return Volume(image=img, labels=lab, voxel_size=voxel, name=Path(split_spec(image)[0]).name)


# --------------------------------------------------------------------------- writing


def check_output_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """Check that ``spec`` names a format :func:`write_volume` can write; return its parts.

    Call it before long work so a typo in an output name fails at once.
    """
    path, dataset = split_spec(spec)
    suffix = path.suffix.lower()
    if suffix not in TIFF_SUFFIXES + HDF5_SUFFIXES + (".npy",):
        raise VolumeError(f"{path}: unknown output format {suffix!r}; use .tif, FILE.h5:dataset or .npy")
    if suffix in HDF5_SUFFIXES and dataset is None:
        raise VolumeError(f"{path}: name the dataset to write as '{path}:DATASET'")
    if path.is_dir():
        raise VolumeError(f"{path}: is a folder; give a file name")
    return path, dataset


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    If ``write`` fails, ``path`` is left as it was and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_volume(spec: str | os.PathLike, data: np.ndarray,
                 voxel_size: tuple[float, float, float] | None = None) -> None:
    """Write a ``(Z, Y, X)`` array to a tif stack, ``FILE.h5:dataset`` or ``.npy``, atomically.

    TIFF files are ImageJ hyperstacks (uint8, uint16 or float32; float64 is stored as float32)
    so Fiji opens them with the right voxel size. An HDF5 file that exists keeps its other
    datasets; the named one is replaced.

    Parameters
    ----------
    spec : str or path
        Target file (``.tif``/``.tiff``, ``FILE.h5:dataset`` or ``.npy``).
    data : ndarray
        ``(Z, Y, X)`` (a 2D array is one slice) or ``(C, Z, Y, X)`` (class probabilities;
        stored in TIFF as an ImageJ hyperstack with channels).
    voxel_size : tuple of float, optional
        ``(z, y, x)`` in nm, stored in the file's metadata.
    """
    path, dataset = check_output_spec(spec)
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim not in (3, 4):
        raise VolumeError(f"{path}: can only write (Z, Y, X) or (C, Z, Y, X) arrays, got shape {data.shape}")
    suffix = path.suffix.lower()

    def write(tmp: Path) -> None:
        if suffix in TIFF_SUFFIXES:
            _write_tiff(tmp, data, voxel_size)
        elif suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, data, allow_pickle=False)
        else:
            _write_hdf5(tmp, path, dataset, data, voxel_size)

    atomic_write(path, write)


def _write_tiff(tmp: Path, data: np.ndarray, voxel_size) -> None:
    import tifffile

    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if data.dtype not in (np.uint8, np.uint16, np.float32):
        if np.issubdtype(data.dtype, np.integer) and data.min() >= 0 and data.max() < 2**16:
            data = data.astype(np.uint16)
        else:
            data = data.astype(np.float32)
    axes = "ZYX"
    if data.ndim == 4:  # (C, Z, Y, X) -> ImageJ's (Z, C, Y, X) order
        data, axes = np.ascontiguousarray(data.transpose(1, 0, 2, 3)), "ZCYX"
    kwargs = {"metadata": {"axes": axes}}
    if voxel_size is not None:
        z, y, x = (float(v) for v in voxel_size)
        kwargs = {"resolution": (1.0 / x, 1.0 / y), "metadata": {"spacing": z, "unit": "nm", "axes": axes}}
    tifffile.imwrite(tmp, data, imagej=True, **kwargs)


def _write_hdf5(tmp: Path, path: Path, dataset: str, data: np.ndarray, voxel_size) -> None:
    h5py = _import_h5py(path)
    if path.exists():
        shutil.copyfile(path, tmp)
    with h5py.File(tmp, "a") as f:
        if dataset in f:
            del f[dataset]
        chunks = (1,) * (data.ndim - 2) + data.shape[-2:]
        ds = f.create_dataset(dataset, data=data, compression="gzip", chunks=chunks)
        if voxel_size is not None:
            ds.attrs["voxel_size"] = np.asarray(voxel_size, dtype=float)
