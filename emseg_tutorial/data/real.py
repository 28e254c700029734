"""Real EM datasets as :class:`~.volume.Volume` objects with this project's label codes.

Each loader reads the file(s) that :func:`.registry.fetch` returns (or any file in the same
format) and maps the dataset's own labels to the codes ``0`` unlabelled, ``1`` boundary,
``2`` cytoplasm, ``3`` mitochondria, ``4`` glia:

==========  ==================================================  ===========================
dataset     stored labels                                        codes
==========  ==================================================  ===========================
VNC         merged label PNGs: membrane 0/32/64/96/128,          1; 4; 3; 2; 2
            glia/extracellular 159, mitochondria 191,
            synapse 223, intracellular 255
SNEMI3D     neuron ids                                           walls 1, inside 2, id 0 -> 0
Lucchi++    mitochondria masks (255; the rest 0)                 3; 2 (not mitochondria)
your FIBSEM codes 1-4 already (tif or ``FILE.h5:dataset``)       as given
==========  ==================================================  ===========================

:func:`load_real_domain` is what ``EMSEG_DATA=real`` runs for
:func:`~emseg_tutorial.data.sources.load_domain`; :func:`load_vnc_lucchi` gives the field's
mitochondria benchmark pair (VNC -> Lucchi++, :mod:`emseg_tutorial.paper.mito_benchmark`). The
registry's ``isbi2012`` can be fetched but has no loader here: no chapter or command reads it.

Examples
--------
>>> vnc_codes(np.array([[0, 128, 159], [191, 223, 255]], np.uint8))
array([[1, 1, 4],
       [3, 2, 2]], dtype=uint8)
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from ..labels import BOUNDARY, CYTOPLASM, GLIA, MITOCHONDRIA, UNLABELLED
from ..presets import Preset
from .errors import VolumeError
from .readers import open_dataset, read_volume
from .specs import natural_key
from .registry import DATASETS, fetch, fetch_all
from .volume import Volume

FIBSEM_ENV = "EMSEG_FIBSEM"
FIBSEM_LABELS_ENV = "EMSEG_FIBSEM_LABELS"

#: Fraction of slices at the end of a real volume held out as the test split.
TEST_FRACTION = 0.25

# --------------------------------------------------------------------------- label mappings

#: VNC merged labels (stack1/labels/*.png, the repository README) -> our codes; any other
#: grey value is 0 (unlabelled).
VNC_CODES: dict[int, int] = {0: BOUNDARY, 32: BOUNDARY, 64: BOUNDARY, 96: BOUNDARY, 128: BOUNDARY,
                             159: GLIA, 191: MITOCHONDRIA, 223: CYTOPLASM, 255: CYTOPLASM}


def _grey(img: np.ndarray) -> np.ndarray:
    """An image as one channel: the first channel of RGB(A) images whose colour channels agree."""
    img = np.asarray(img)
    if img.ndim >= 3 and img.shape[-1] in (3, 4) and img.shape[-1] < img.shape[-2]:
        colour = img[..., :3]
        if not (colour == colour[..., :1]).all():
            raise VolumeError("the image has colours; expected grey values")
        img = colour[..., 0]
    return img


def vnc_codes(merged: np.ndarray) -> np.ndarray:
    """VNC merged labels to codes: membranes and junctions 1, intracellular and synapses 2,
    mitochondria 3, glia/extracellular 4 (:data:`VNC_CODES`; other values 0).

    Synapses (223) are drawn inside the neurites, next to the membrane; they count as
    cytoplasm, the paper having no synapse class.
    """
    table = np.zeros(256, np.uint8)
    for value, code in VNC_CODES.items():
        table[value] = code
    merged = _grey(merged)
    if merged.dtype != np.uint8:
        if merged.min() < 0 or merged.max() > 255:
            raise VolumeError(f"VNC labels must be 8-bit grey values, got {merged.min()}..{merged.max()}")
        merged = merged.astype(np.uint8)
    return table[merged]


def vnc_codes_from_layers(membranes: np.ndarray, mitochondria: np.ndarray,
                          glia: np.ndarray | None = None) -> np.ndarray:
    """Codes from VNC-style binary layer masks (True where the structure is).

    Precedence, highest first: membrane 1 > mitochondria 3 > glia/extracellular 4; every other
    pixel is intracellular 2. Membrane wins because the walls are the thin, rare class the
    boundary task is about; a mitochondrion inside a glial cell stays a mitochondrion.

    Examples
    --------
    >>> m = np.array([[1, 1, 0, 0]], bool); mito = np.array([[0, 1, 1, 0]], bool)
    >>> vnc_codes_from_layers(m, mito, glia=np.array([[0, 0, 1, 1]], bool))
    array([[1, 1, 3, 4]], dtype=uint8)
    """
    membranes, mitochondria = np.asarray(membranes, bool), np.asarray(mitochondria, bool)
    if membranes.shape != mitochondria.shape or (glia is not None and np.shape(glia) != membranes.shape):
        raise ValueError("layer masks must all have the same shape")
    codes = np.full(membranes.shape, CYTOPLASM, np.uint8)
    if glia is not None:
        codes[np.asarray(glia, bool)] = GLIA
    codes[mitochondria] = MITOCHONDRIA
    codes[membranes] = BOUNDARY
    return codes


def neuron_ids_to_codes(ids: np.ndarray) -> np.ndarray:
    """Neuron ids ``(Z, Y, X)`` to codes: boundary 1, inside a neuron 2, id 0 unlabelled 0.

    Boundaries are ``skimage.segmentation.find_boundaries(ids[z], mode="thick")`` on each 2D
    slice: every pixel with a 4-neighbour of another id, so a wall between two neurons is two
    pixels wide (12 nm in SNEMI3D), as in the synthetic twins. Slices are treated separately
    because the sections are thick (30 nm): a neuron ending between two sections is not a wall
    in either. Pixels of id 0 (no neuron) are unlabelled, and the pixels of a neuron next to
    them are boundary.

    Examples
    --------
    >>> ids = np.array([[[1, 1, 2, 2], [1, 1, 2, 2]]])
    >>> neuron_ids_to_codes(ids)
    array([[[2, 1, 1, 2],
            [2, 1, 1, 2]]], dtype=uint8)
    """
    ids = np.asarray(ids)
    if ids.ndim == 2:
        ids = ids[None]
    walls = np.stack([find_boundaries(s, mode="thick") for s in ids])
    codes = np.where(walls, BOUNDARY, CYTOPLASM).astype(np.uint8)
    codes[ids == 0] = UNLABELLED
    return codes


# --------------------------------------------------------------------------- zip helpers


def _imread_bytes(data: bytes, name: str) -> np.ndarray:
    if name.lower().endswith((".tif", ".tiff")):
        import tifffile

        return tifffile.imread(io.BytesIO(data))
    from skimage.io import imread

    return imread(io.BytesIO(data))


def _zip_stack(archive: zipfile.ZipFile, pattern: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """The images whose member name matches ``pattern`` (natural order), stacked along z."""
    names = sorted((n for n in archive.namelist() if re.search(pattern, n)), key=natural_key)
    if not names:
        raise VolumeError(f"{path}: no files matching {pattern!r} in the archive")
    slices = [np.squeeze(_imread_bytes(archive.read(n), n)) for n in names]
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise VolumeError(f"{path}: slices matching {pattern!r} have different shapes {sorted(shapes)}")
    return np.stack(slices), names


def _zip_pair(path: str | os.PathLike, image_pattern: str, labels_pattern: str,
              names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The image and label stacks of a zip (:func:`_zip_stack`), the image as one grey channel,
    checked to be one ``(Z, Y, X)`` volume each of the same shape (``names`` for messages)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            image, _ = _zip_stack(archive, image_pattern, path)
            labels, _ = _zip_stack(archive, labels_pattern, path)
    except (zipfile.BadZipFile, OSError) as err:
        raise VolumeError(f"{path}: cannot be read as a zip archive ({err})") from None
    image = _grey(image)
    if image.ndim != 3 or image.shape != labels.shape[:3]:
        raise VolumeError(f"{path}: {names[0]} {image.shape} and {names[1]} {labels.shape} do not match")
    return image, labels


# --------------------------------------------------------------------------- loaders


def _voxel(name: str) -> tuple[float, float, float]:
    return DATASETS[name].voxel_size


def load_vnc(path: str | os.PathLike) -> Volume:
    """Stack 1 of the VNC repository zip (raw tifs + merged label PNGs) with codes 1-4.

    Parameters
    ----------
    path : str or path
        The zip of https://github.com/unidesigner/groundtruth-drosophila-vnc (any top folder
        name): ``stack1/raw/*.tif`` and ``stack1/labels/*.png``, read in natural order.
    """
    image, merged = _zip_pair(path, r"(^|/)stack1/raw/[^/]+\.tiff?$", r"(^|/)stack1/labels/[^/]+\.png$",
                              ("stack1 raw", "labels"))
    return Volume(image, vnc_codes(merged), _voxel("vnc"), "VNC stack 1")


#: Lucchi++'s folders in its zip, by split (torch-em's loader stores Test_* as its "train" file
#: and Train_* as "test"; here each split is the folder of that name)
LUCCHI_FOLDERS = {"train": ("Train_In", "Train_Out"), "test": ("Test_In", "Test_Out")}


def lucchi_codes(mask: np.ndarray) -> np.ndarray:
    """Lucchi++ masks to codes: mitochondria (255) 3, every other pixel 2 (labelled, not mitochondria).

    Lucchi++ annotates every mitochondrion of its volumes and nothing else, so the pixels outside
    them are known to be no mitochondrion: the ``mitochondria`` one-vs-rest task reads them as its
    rest (code 2 here stands for "not mitochondria"; the volume has no boundary, cytoplasm or glia
    labels, so read it with that task only).

    Examples
    --------
    >>> lucchi_codes(np.array([[0, 255], [255, 0]], np.uint8))
    array([[2, 3],
           [3, 2]], dtype=uint8)
    """
    return np.where(_grey(mask) == 255, MITOCHONDRIA, CYTOPLASM).astype(np.uint8)


def load_lucchi_pp(path: str | os.PathLike, split: str = "train") -> Volume:
    """One split of the Lucchi++ zip (165 slices of 768 x 1024, about 5 nm isotropic), codes 3 / 2.

    Parameters
    ----------
    path : str or path
        ``lucchi_pp.zip`` of the registry (:func:`.registry.fetch` ``("lucchi_pp")``):
        ``Lucchi++/{Train,Test}_In/mask%04d.png`` (images) and ``Lucchi++/{Train,Test}_Out/%d.png``
        (mitochondria 255), read in natural order.
    split : {"train", "test"}
        The volume of that name (:data:`LUCCHI_FOLDERS`).
    """
    if split not in LUCCHI_FOLDERS:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    images, masks = LUCCHI_FOLDERS[split]
    image, mask = _zip_pair(path, rf"(^|/){images}/[^/]+\.png$", rf"(^|/){masks}/[^/]+\.png$", (images, masks))
    return Volume(image, lucchi_codes(mask), _voxel("lucchi_pp"), f"Lucchi++ {split}")


def load_vnc_lucchi(preset: Preset, *, cache: str | os.PathLike | None = None,
                    progress: bool = True) -> dict[str, Volume]:
    """The field's mitochondria adaptation pair from the downloads: VNC stack 1 -> Lucchi++.

    Returns ``source`` / ``source_val`` (VNC's train and test splits, :func:`split_range`,
    cropped to the preset's ``source_shape``), ``target`` (the Lucchi++ train volume: its image
    is adapted to, its labels train only the oracle) and ``target_eval`` (the Lucchi++ test
    volume, scored), both cropped to the preset's ``target_shape`` (:func:`crop_region`: the
    first slices, the centre in y and x). Both files are fetched first
    (:func:`.registry.fetch_all`), so a missing one is reported, with the other, before any work.
    """
    vnc_zip, lucchi_zip = fetch_all(("vnc", "lucchi_pp"), cache=cache, progress=progress,
                                    why="the VNC -> Lucchi++ benchmark")
    vnc = load_vnc(vnc_zip)
    out = {"source": _crop(vnc, crop_region(vnc.shape, "train", preset.source_shape)),
           "source_val": _crop(vnc, crop_region(vnc.shape, "test", preset.source_shape))}
    for key, split in (("target", "train"), ("target_eval", "test")):
        vol = load_lucchi_pp(lucchi_zip, split)
        out[key] = _crop(vol, crop_region(vol.shape, split, preset.target_shape, z_range=(0, vol.shape[0])))
    return out


def _h5_read(path: Path, key: str, region: tuple[slice, ...] = ()) -> np.ndarray:
    """Dataset ``key`` of an HDF5 file (only ``region``, a ``(z, y, x)`` hyperslab, when given)."""
    with open_dataset(path, key) as vol:
        return vol.read_region(*region) if region else vol.read_all()


def _h5_shape(path: Path, key: str) -> tuple[int, ...]:
    """``(Z, Y, X)`` of dataset ``key`` of an HDF5 file, read from its header."""
    with open_dataset(path, key) as vol:
        return vol.shape


SNEMI_RAW, SNEMI_IDS = "volumes/raw", "volumes/labels/neuron_ids"


def load_snemi(path: str | os.PathLike, z: slice = slice(None), y: slice = slice(None),
               x: slice = slice(None), labels: bool = True) -> Volume:
    """SNEMI3D from torch-em's HDF5 (``volumes/raw``, ``volumes/labels/neuron_ids``), codes 1/2.

    Only the region ``[z, y, x]`` is read. Boundaries are found with one extra pixel of context
    around the region (:func:`neuron_ids_to_codes`), so a crop has the same codes as the same
    pixels of the whole volume. ``labels=False`` reads the image only (the test file).
    """
    path = Path(path)
    shape = _h5_shape(path, SNEMI_RAW)
    zs, ys, xs = (slice(*s.indices(n)) for s, n in zip((z, y, x), shape))
    image = _h5_read(path, SNEMI_RAW, (zs, ys, xs))
    codes = None
    if labels:
        y0, x0 = max(ys.start - 1, 0), max(xs.start - 1, 0)
        y1, x1 = min(ys.stop + 1, shape[1]), min(xs.stop + 1, shape[2])
        ids = _h5_read(path, SNEMI_IDS, (zs, slice(y0, y1), slice(x0, x1)))
        codes = neuron_ids_to_codes(ids)[:, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return Volume(image, codes, _voxel("snemi3d"), "SNEMI3D")


def load_fibsem(image: str | os.PathLike, labels: str | os.PathLike | None = None) -> Volume:
    """A user's FIBSEM volume (the paper's source): tif / ``FILE.h5:dataset`` / folder / .npy.

    The labels must already hold this project's codes (0 unlabelled, 1 boundary, 2 cytoplasm,
    3 mitochondria, 4 glia) and match the image's shape; every check is
    :func:`~emseg_tutorial.data.readers.read_volume`'s and raises a
    :class:`~emseg_tutorial.data.errors.VolumeError` naming the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from emseg_tutorial.data.writers import write_volume
    >>> d = tempfile.mkdtemp()
    >>> write_volume(os.path.join(d, "img.tif"), np.zeros((2, 8, 8), np.uint8), (10.0, 10.0, 10.0))
    >>> write_volume(os.path.join(d, "lab.tif"), np.full((2, 8, 8), 2, np.uint8))
    >>> load_fibsem(os.path.join(d, "img.tif"), os.path.join(d, "lab.tif")).voxel_size
    (10.0, 10.0, 10.0)
    """
    vol = read_volume(image, labels)
    vol.name = f"FIBSEM ({Path(str(image)).name})"
    return vol


# --------------------------------------------------------------------------- real-data mode


def split_range(depth: int, split: str, test_fraction: float = TEST_FRACTION) -> tuple[int, int]:
    """Slices ``(start, stop)`` of a split: the last ``test_fraction`` (at least one slice) is test.

    Examples
    --------
    >>> split_range(100, "train"), split_range(100, "test"), split_range(20, "test")
    ((0, 75), (75, 100), (15, 20))
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    n_test = min(depth - 1, max(1, round(depth * test_fraction))) if depth > 1 else 0
    return (0, depth - n_test) if split == "train" or n_test == 0 else (depth - n_test, depth)


def crop_region(shape: tuple[int, int, int], split: str, target: tuple[int, int, int], *,
                z_range: tuple[int, int] | None = None) -> tuple[slice, slice, slice]:
    """The ``(z, y, x)`` region of a split cropped to at most ``target`` (the preset's shape).

    z: the first ``target[0]`` slices of the split (``z_range``, when given, is the split's
    slices instead: a volume that is a split of its own); y and x: the centre ``target`` pixels.
    Nothing is resized or padded: a volume smaller than the preset is used whole.

    Examples
    --------
    >>> crop_region((20, 512, 512), "test", (16, 128, 128))
    (slice(15, 20, None), slice(192, 320, None), slice(192, 320, None))
    """
    z0, z1 = split_range(shape[0], split) if z_range is None else z_range
    z1 = min(z1, z0 + target[0])
    yx = []
    for n, t in zip(shape[1:], target[1:]):
        start = max(0, (n - t) // 2)
        yx.append(slice(start, start + min(n, t)))
    return (slice(z0, z1), *yx)


def _crop(vol: Volume, region: tuple[slice, slice, slice]) -> Volume:
    labels = None if vol.labels is None else vol.labels[region]
    return Volume(np.ascontiguousarray(vol.image[region]), None if labels is None else np.ascontiguousarray(labels),
                  vol.voxel_size, vol.name)


def fibsem_paths(image: str | None, labels: str | None) -> tuple[str, str] | None:
    """``(image, labels)`` of the user's FIBSEM volume (the session's ``EMSEG_FIBSEM`` /
    ``EMSEG_FIBSEM_LABELS``), or None when neither is given.

    Raises ValueError when only one of the two is given (the source needs both).
    """
    image, labels = (image or "").strip(), (labels or "").strip()
    if not image and not labels:
        return None
    if not image or not labels:
        missing = FIBSEM_ENV if not image else FIBSEM_LABELS_ENV
        raise ValueError(f"set both {FIBSEM_ENV} (image) and {FIBSEM_LABELS_ENV} (labels, codes 1-4) to use your "
                         f"FIBSEM volume; {missing} is not set")
    return image, labels


def load_real_domain(domain: str, preset: Preset, split: str = "train", *, cache: str | os.PathLike | None = None,
                     fibsem: tuple[str | None, str | None] = (None, None)) -> Volume:
    """The real volume of a domain for ``EMSEG_DATA=real``, split along z and cropped to the preset.

    * ``"fibsem"``: the user's volume ``fibsem = (image, labels)`` (the session's
      ``EMSEG_FIBSEM`` + ``EMSEG_FIBSEM_LABELS``) when given, else the VNC stack 1 stand-in
      (:func:`load_vnc`, downloaded once into ``cache``).
    * ``"snemi"``: the SNEMI3D train stack with labels from its neuron ids (:func:`load_snemi`);
      the labels are used only to evaluate, as in the paper.

    The first 75 % of the slices are the train split, the last 25 % the test split
    (:func:`split_range`); each is then cropped to the preset's ``source_shape`` /
    ``target_shape`` (:func:`crop_region`: first slices, centre in y and x), so ``ci`` and
    ``cpu`` run on small pieces and ``gpu`` on as much as the data has.

    Raises
    ------
    DownloadError
        A dataset is neither cached nor downloadable (one line: what to download, where to).
    """
    if domain == "fibsem":
        paths = fibsem_paths(*fibsem)
        vol = load_fibsem(*paths) if paths else load_vnc(fetch("vnc", cache=cache))
        return _crop(vol, crop_region(vol.shape, split, preset.source_shape))
    if domain == "snemi":
        path = fetch("snemi3d", "snemi_train.h5", cache=cache)
        region = crop_region(_h5_shape(path, SNEMI_RAW), split, preset.target_shape)
        return load_snemi(path, *region)
    raise ValueError(f"unknown domain {domain!r}; expected 'fibsem' or 'snemi'")
