"""OME-Zarr and zarr volumes: the zarr side of the readers and writers (:mod:`.readers`, :mod:`.writers`).

Specs: ``vol.zarr`` is an OME-Zarr image (a group whose ``multiscales`` metadata names its
arrays; the first, full-resolution one is read) or a bare zarr array; ``vol.zarr:name`` is
the image or array ``name`` inside the group ``vol.zarr``. :mod:`.readers` and :mod:`.writers` wrap the two
classes here in a :class:`~.readers.LazyVolume` and a :class:`~.writers.SliceWriter`, so
every reader and writer of the library accepts zarr.

**Reading** is lazy: a read of slices ``z0:z1`` decodes only their chunks. The voxel size
comes from the ``scale`` transformation of the dataset read and the axes' units (nanometer,
micrometer, angstrom, ... converted to nm by :mod:`.units`), or from a ``voxel_size``
attribute (nm) of a bare array. Any level of a pyramid can be read: ``vol.zarr:1`` is the
dataset ``1`` of the multiscales of ``vol.zarr``, with that level's voxel size (its own scale
transformation); ``vol.zarr:labels/pred`` a label image in it. OME-Zarr 0.4 (zarr format 2)
and 0.5 (zarr format 3, metadata under ``"ome"``) are both read; 0.5 needs zarr 3.

**Writing** makes an OME-Zarr image the way the field's tools write it (ome-zarr-py,
napari-ome-zarr, neuroglancer, Fiji's MoBIE/BigDataViewer read it): NGFF 0.5 on zarr format 3
where the installed zarr is 3, else NGFF 0.4 on zarr format 2 (inside an existing group: that
group's format); the multiscales metadata is written by ome-zarr-py
(``ome_zarr.writer.write_multiscales_metadata``). The image is a **pyramid**: array ``0`` at
full resolution and arrays ``1``, ``2``, ... each halved in y and x (:func:`pyramid_shapes`:
until a level is at most :data:`SMALLEST` pixels on its larger side), with scales to match;
a level is the 2 x 2 mean of the one above (images, probabilities) or, for label images,
its 2 x 2 mode (:func:`downsample`). Axes ``z, y, x`` (``c, z, y, x`` for probabilities) in
nanometers; chunks one slice deep (and at most 1024 x 1024 in y and x), so every block of
slices writes its own chunks at every level. A **label image** (``labels=True``: predicted
label codes) also carries NGFF ``image-label`` metadata, so napari shows it as a labels layer;
written as ``IMAGE.zarr:labels/NAME`` it is a label of that image (``labels/NAME``, listed in
the ``labels`` group's metadata once it is complete).

Every chunk file is written atomically (the zarr store writes a temporary file and renames
it). After each block of slices is written at every level, a marker file
``.emseg-done/Z0-Z1`` is added beside the arrays; when every slice is marked the image's
``emseg_tutorial`` attribute says ``complete``. So

* a reader refuses an image whose writer stopped early (killed, crashed) instead of
  returning its fill values as data;
* a writer given the same ``job`` key (what :func:`~emseg_tutorial.predict.predict_file`
  derives from the model, the input and its statistics) resumes: slices already marked are
  skipped, everything else (including chunks a killed run wrote without marking) is
  written again. A different key or shape starts over.

An image never replaces existing data before it is complete: when the output already holds a
finished image or any other zarr, the new one is written in a hidden folder beside it
(``.NAME.emseg-new``, resumed like the above) and renamed over the old one at the end.
A SIGINT or SIGTERM under the command line (:mod:`emseg_tutorial.interrupt`) waits until the
chunks being written and their marker are on disk, so an interrupted prediction leaves no
temporary chunk file and resumes where it stopped.

Examples
--------
>>> import os, tempfile
>>> spec = os.path.join(tempfile.mkdtemp(), "v.zarr")
>>> out = ZarrOutput.create(spec, (3, 4, 5), np.uint8, voxel_size=(30.0, 6.0, 6.0))
>>> for z in range(3):
...     out.write_at(np.full((1, 4, 5), z, np.uint8), z)
>>> out.finish()
>>> img = ZarrImage(spec)
>>> img.shape, img.voxel_size, img.read(1, 3)[:, 0, 0].tolist()
((3, 4, 5), (30.0, 6.0, 6.0), [1, 2])
>>> pyramid_shapes((3, 300, 200))  # the levels written for a larger image
[(3, 300, 200), (3, 150, 100), (3, 75, 50), (3, 38, 25)]
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np

from ..interrupt import deferred
from .errors import VolumeError
from .units import nm_per_unit

ZARR_SUFFIX = ".zarr"
#: attribute of an image written here: {"complete": bool, "job": str | None, "shape": [...], "dtype": str}
STATE_KEY = "emseg_tutorial"
DONE_FOLDER = ".emseg-done"
#: suffix of the hidden folder an image is written in when it replaces an existing zarr
STAGING_SUFFIX = ".emseg-new"
#: largest chunk side in y and x
TILE = 1024
#: pyramid levels are added until one is at most this many pixels on its larger side (y, x)
SMALLEST = 64
EXTRA_HINT = "pip install 'emseg-tutorial[scale]'"


def import_zarr(path: str | os.PathLike = "zarr"):
    """The ``zarr`` module, else a one-line :class:`VolumeError` naming the ``scale`` extra."""
    try:
        import zarr
    except ImportError:
        raise VolumeError(f"{path}: zarr volumes need the zarr package; install it with {EXTRA_HINT} "
                          f"(or 'pip install zarr')") from None
    return zarr


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a path ending in ``.zarr`` (a zarr spec's file part).

    Examples
    --------
    >>> is_zarr("a/b.zarr"), is_zarr("b.tif")
    (True, False)
    """
    return Path(path).suffix.lower() == ZARR_SUFFIX


def _zarr_major(zarr) -> int:
    return int(zarr.__version__.split(".")[0])


def _is_zarr_folder(folder: Path) -> bool:
    return any((folder / f).exists() for f in (".zgroup", ".zarray", "zarr.json"))


def _attrs(node) -> dict:
    attrs = dict(node.attrs)
    return {**attrs, **attrs.get("ome", {})}  # OME-Zarr 0.5 nests its keys under "ome"


def _arrays_in(group) -> list[str]:
    names = []
    for name, node in group.members(max_depth=None) if hasattr(group, "members") else group.items():
        if hasattr(node, "shape") and hasattr(node, "chunks"):
            names.append(str(name))
    return sorted(names)


def _voxel_from_multiscales(ms: dict, dataset: dict | None = None) -> tuple[float, float, float] | None:
    """The voxel size (nm) of ``dataset`` (default: the first, full-resolution one) of ``ms``."""
    axes = ms.get("axes") or []
    names = [a.get("name") if isinstance(a, dict) else a for a in axes]
    scale = None
    dataset = dataset if dataset is not None else (ms.get("datasets") or [{}])[0]
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = t.get("scale")
    if scale is None or len(scale) != len(names):
        return None
    voxel = []
    for axis in "zyx":
        if axis not in names:
            return None
        i = names.index(axis)
        factor = nm_per_unit(axes[i].get("unit")) if isinstance(axes[i], dict) else None
        if factor is None:
            return None
        voxel.append(round(float(scale[i]) * factor, 6))
    return tuple(voxel)


def _level_of(root, inner: str):
    """``(group, multiscales, dataset)`` when ``inner`` names a pyramid level of the
    multiscales of the group holding it: a dataset's path (``0``, ``s1``) or, when no member
    has that name, a level's number (``1``: the second dataset, whatever its path); else None."""
    parent_path, _, leaf = inner.rpartition("/")
    try:
        parent = root[parent_path] if parent_path else root
    except KeyError:
        return None
    if hasattr(parent, "shape"):
        return None
    for ms in _attrs(parent).get("multiscales") or []:
        datasets = [d for d in ms.get("datasets") or [] if isinstance(d, dict) and "path" in d]
        for dataset in datasets:
            if str(dataset["path"]).strip("/") == leaf:
                return parent, ms, dataset
        if leaf.isdigit() and int(leaf) < len(datasets) and leaf not in parent:
            return parent, ms, datasets[int(leaf)]
    return None


def split_zarr(spec: str | os.PathLike) -> tuple[Path, str]:
    """``"vol.zarr:name"`` -> ``(Path("vol.zarr"), "name")``; a bare ``vol.zarr`` has name ``""``.

    Examples
    --------
    >>> split_zarr("out/pred.zarr:labels"), split_zarr("pred.zarr")
    ((PosixPath('out/pred.zarr'), 'labels'), (PosixPath('pred.zarr'), ''))
    """
    text = os.fspath(spec)
    match = re.match(r"^(.*\.zarr):(.+)$", text, flags=re.IGNORECASE)
    if match:
        return Path(match.group(1)), match.group(2).strip("/")
    return Path(text), ""


class ZarrImage:
    """A zarr array or OME-Zarr image opened for lazy reading (see the module docstring).

    Raises
    ------
    VolumeError
        No zarr there, a group without an array (the message lists the arrays it holds), an
        array with more than three axes of size > 1, or an image its writer did not finish.
    """

    def __init__(self, spec: str | os.PathLike):
        self.name = os.fspath(spec)
        path, inner = split_zarr(spec)
        zarr = import_zarr(path)
        if not path.exists():
            raise VolumeError(f"{path}: no such file or folder")
        try:
            root = zarr.open(store=str(path), mode="r")
        except Exception as err:
            if (path / "zarr.json").exists() and _zarr_major(zarr) < 3:
                raise VolumeError(f"{path}: is zarr format 3 (OME-Zarr 0.5), which zarr {zarr.__version__} cannot "
                                  f"read; install zarr 3 (Python >= 3.11): pip install 'zarr>=3'") from None
            raise VolumeError(f"{path}: holds no zarr array or group ({err.__class__.__name__})") from None
        node = root
        level = _level_of(root, inner) if inner and not hasattr(root, "shape") else None
        if inner:
            try:
                node = level[0][level[2]["path"]] if level is not None else root[inner]
            except KeyError:
                raise VolumeError(f"{path}: no array or image {inner!r}; arrays in it: "
                                  f"{_arrays_in(root) if not hasattr(root, 'shape') else []}") from None
        self.voxel_size = None
        attrs = _attrs(node)
        self.state = attrs.get(STATE_KEY)
        if level is not None:  # one level of a pyramid (vol.zarr:1): its own scale; the image's state
            parent, ms, dataset = level
            self.state = _attrs(parent).get(STATE_KEY)
            self.voxel_size = _voxel_from_multiscales(ms, dataset)
        if not hasattr(node, "shape"):  # a group: an OME-Zarr image, else name one of its arrays
            multiscales = attrs.get("multiscales")
            if not multiscales:
                arrays = _arrays_in(node)
                where = f"{path}:{inner}" if inner else f"{path}"
                hint = (f"; name one as '{path}:ARRAY' (arrays in it: {arrays})" if arrays
                        else " (an empty or unfinished zarr)")
                raise VolumeError(f"{where}: is a zarr group without an array or OME-Zarr multiscales{hint}")
            ms = multiscales[0]
            try:
                node = node[ms["datasets"][0]["path"]]
            except (KeyError, IndexError, TypeError):
                raise VolumeError(f"{path}: OME-Zarr multiscales names no readable dataset") from None
            self.voxel_size = _voxel_from_multiscales(ms)
        elif level is None:
            voxel = attrs.get("voxel_size")
            if voxel is not None and len(voxel) == 3:
                self.voxel_size = tuple(float(v) for v in voxel)
        if isinstance(self.state, dict) and not self.state.get("complete", True):
            raise VolumeError(f"{path}: incomplete: its writer stopped before every slice was written "
                              f"(killed or failed run); rerun the command that writes it (prediction "
                              f"resumes) or delete it")
        self.array = node
        shape = tuple(int(s) for s in node.shape)
        self._lead = 0
        while len(shape) - self._lead > 3 and shape[self._lead] == 1:  # t = 1, c = 1 of OME-Zarr images
            self._lead += 1
        self.shape = shape[self._lead:]
        if len(self.shape) > 3:
            raise VolumeError(f"{self.name}: a volume has at most 3 axes of size > 1, got shape {shape}")
        self.dtype = np.dtype(node.dtype)

    def _index(self, *parts) -> tuple:
        return (0,) * self._lead + parts

    def read(self, z0: int, z1: int) -> np.ndarray:
        """Slices ``z0:z1`` (only their chunks are decoded)."""
        if len(self.shape) == 3:
            return np.asarray(self.array[self._index(slice(z0, z1))])
        return np.asarray(self.array[self._index()])[None]

    def read_region(self, z0: int, z1: int, y: slice, x: slice) -> np.ndarray:
        """Slices ``z0:z1`` cropped to ``[y, x]`` (only the chunks they touch are decoded)."""
        if len(self.shape) == 3:
            return np.asarray(self.array[self._index(slice(z0, z1), y, x)])
        return np.asarray(self.array[self._index(y, x)])[None]


def pyramid_shapes(shape, smallest: int = SMALLEST) -> list[tuple[int, ...]]:
    """The shapes of the levels of a pyramid of ``shape``: y and x halved (rounded up) per
    level until the larger of them is at most ``smallest``; other axes kept.

    Examples
    --------
    >>> pyramid_shapes((2, 130, 65), smallest=64)
    [(2, 130, 65), (2, 65, 33), (2, 33, 17)]
    >>> pyramid_shapes((3, 2, 40, 40))  # small: one level
    [(3, 2, 40, 40)]
    """
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1][-2:]) > smallest:
        *lead, y, x = shapes[-1]
        shapes.append((*lead, -(-y // 2), -(-x // 2)))
    return shapes


def downsample(block: np.ndarray, labels: bool = False) -> np.ndarray:
    """``block`` (``(..., Y, X)``) halved in y and x, the next level of a pyramid.

    Each output pixel is a 2 x 2 window (an odd last row or column repeats its edge): the
    window's mean for images and probabilities (rounded for integer dtypes), its most frequent
    value for labels (ties: the first in the order top-left, top-right, bottom-left,
    bottom-right), so a label level holds only codes of the level above. Same dtype.

    Examples
    --------
    >>> codes = np.array([[1, 2, 2, 2, 3], [1, 1, 2, 2, 3]], np.uint8)
    >>> downsample(codes, labels=True).tolist(), downsample(codes.astype(np.float32)).tolist()
    ([[1, 2, 3]], [[1.25, 2.0, 3.0]])
    """
    y, x = block.shape[-2:]
    pad = [(0, 0)] * (block.ndim - 2) + [(0, y % 2), (0, x % 2)]
    even = np.pad(block, pad, mode="edge") if y % 2 or x % 2 else block
    windows = even.reshape(*block.shape[:-2], (y + 1) // 2, 2, (x + 1) // 2, 2)
    if labels:
        four = np.moveaxis(windows, -3, -2).reshape(*windows.shape[:-4], windows.shape[-4], windows.shape[-2], 4)
        votes = (four[..., :, None] == four[..., None, :]).sum(-1)  # how often each of the 4 occurs
        return np.take_along_axis(four, votes.argmax(-1)[..., None], -1)[..., 0]
    mean = windows.mean(axis=(-3, -1))
    return (np.rint(mean) if block.dtype.kind in "iu" else mean).astype(block.dtype)


def _chunks(shape) -> tuple[int, ...]:
    """One slice deep, at most :data:`TILE` in y and x."""
    return (1,) * (len(shape) - 2) + tuple(min(n, TILE) for n in shape[-2:])


def zarr_format_of(group) -> int:
    """The zarr format (2 or 3) of an open zarr group or array."""
    return int(getattr(getattr(group, "metadata", None), "zarr_format", 2))


def _ngff(zarr_format: int):
    """ome-zarr-py's format of NGFF 0.5 (zarr format 3) or 0.4 (zarr format 2)."""
    try:
        from ome_zarr import format as ngff
    except ImportError:
        raise VolumeError(f"writing OME-Zarr needs ome-zarr-py; install it with {EXTRA_HINT} "
                          f"(or 'pip install ome-zarr')") from None
    return ngff.FormatV05() if zarr_format >= 3 else ngff.FormatV04()


def _set_ome(group, version: str, **items) -> None:
    """Add NGFF keys to a group's attributes: top level in 0.4, under ``"ome"`` (with the
    version) in 0.5."""
    if version == "0.4":
        group.attrs.update(items)
    else:
        group.attrs.update({"ome": {**dict(group.attrs).get("ome", {}), "version": version, **items}})


def write_multiscales(group, shapes, voxel_size, name: str, labels: bool = False, of_image: bool = False) -> str:
    """Write the NGFF metadata of the pyramid ``shapes`` (arrays ``0``, ``1``, ...) in
    ``group``, with ome-zarr-py, in the group's zarr format; returns the NGFF version.

    Levels have the voxel size times 2 per level in y and x (nm; unitless ones when
    ``voxel_size`` is None); ``labels`` adds the ``image-label`` metadata of a label image,
    ``of_image`` its source: the image two groups up (``IMAGE/labels/NAME``).
    """
    with warnings.catch_warnings():  # ome-zarr-py 0.18 warns of its own deprecated Scaler on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    fmt = _ngff(zarr_format_of(group))
    ndim = len(shapes[0])
    unit = {"unit": "nanometer"} if voxel_size is not None else {}
    axes = ([{"name": "c", "type": "channel"}] if ndim == 4 else []) + [
        {"name": a, "type": "space", **unit} for a in "zyx"]
    z, y, x = (float(v) for v in (voxel_size if voxel_size is not None else (1, 1, 1)))
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": ([1.0] if ndim == 4 else []) + [z, y * 2 ** k, x * 2 ** k]}]}
        for k in range(len(shapes))]
    write_multiscales_metadata(group, datasets, fmt=fmt, axes=axes, name=name)
    if labels:
        source = {"source": {"image": "../../"}} if of_image else {}
        _set_ome(group, fmt.version, **{"image-label": {"version": fmt.version, **source}})
    return fmt.version


def register_label(labels_folder: Path, name: str) -> None:
    """List the label image ``name`` in the NGFF ``labels`` group ``labels_folder`` (an image's
    ``labels/``), so viewers find it; nothing when it is listed already."""
    zarr = import_zarr(labels_folder)
    group = zarr.open_group(str(labels_folder), mode="r+")
    listed = list(_attrs(group).get("labels", []))
    if name not in listed:
        _set_ome(group, _ngff(zarr_format_of(group)).version, labels=listed + [name])


def _check_label_of_image(target: Path, shape) -> None:
    """A label image ``IMAGE.zarr:labels/NAME`` must match the image's full-resolution shape."""
    image_folder = target.parent.parent
    if not _is_zarr_folder(image_folder):
        return  # a new zarr: the labels group is created with it
    try:
        image = ZarrImage(image_folder)
    except VolumeError:
        return  # no image there (a plain group): nothing to match
    if image.shape != tuple(shape)[-3:]:
        raise VolumeError(f"{target}: labels of the image {image_folder} must have its shape {image.shape}, got "
                          f"{tuple(shape)}; predict its full-resolution level {image_folder}:0")


def check_zarr_output(path: Path, inner: str) -> None:
    """Raise VolumeError unless ``path`` (``:inner``) can be written as a zarr image.

    An existing folder must already be a zarr (a folder of anything else is never replaced).
    """
    if path.exists() and not path.is_dir():
        raise VolumeError(f"{path}: exists and is a file, not a zarr folder")
    if path.is_dir() and any(path.iterdir()) and not _is_zarr_folder(path):
        raise VolumeError(f"{path}: exists and is not a zarr (no .zgroup/.zarray/zarr.json); "
                          f"refusing to replace it")


def staging_folder(folder: Path) -> Path:
    """Where an image that replaces the existing zarr ``folder`` is written until it is complete.

    A hidden folder beside it (same parent, so the final rename stays on one file system).

    Examples
    --------
    >>> staging_folder(Path("out/pred.zarr")), staging_folder(Path("s.zarr/pred"))
    (PosixPath('out/.pred.zarr.emseg-new'), PosixPath('s.zarr/.pred.emseg-new'))
    """
    return folder.parent / f".{folder.name}{STAGING_SUFFIX}"


def begun(spec: str | os.PathLike) -> bool:
    """Whether the zarr output ``spec`` holds an unfinished image of this library, in place or in
    its :func:`staging_folder`: a prediction into it began and the same command continues it.

    Examples
    --------
    >>> import tempfile
    >>> begun(Path(tempfile.mkdtemp()) / "never.zarr")
    False
    """
    path, inner = split_zarr(spec)
    target = path / inner if inner else path
    folders = [f for f in (target, staging_folder(target)) if f.is_dir()]
    if not folders:
        return False
    zarr = import_zarr(path)
    return any(not (ZarrOutput._state_of(zarr, f) or {"complete": True}).get("complete", True) for f in folders)


class ZarrOutput:
    """An OME-Zarr image being written, slice blocks in any order, resumable (module docstring).

    Use :meth:`create` (new, or resumed when ``job`` matches what is there) in the process
    that plans the writing and :meth:`attach` in workers that write blocks of it; call
    :meth:`finish` once every slice is written.

    A new image is written in place; one that replaces an existing zarr (a finished image, or
    anyone's zarr the user named as the output) is written in :func:`staging_folder` and
    renamed over the old one by :meth:`finish`, so the old data stays whole until the new is.
    """

    def __init__(self, spec, arrays, folder: Path, shape, dtype, done: set[int], target: Path | None = None,
                 labels: bool = False):
        self.spec, self.arrays, self.folder = os.fspath(spec), list(arrays), folder
        self.shape, self.dtype, self.done = tuple(shape), np.dtype(dtype), done
        self.nz = self.shape[-3]
        self.labels = labels
        self.target = folder if target is None else target  # where the image ends up (folder: where it is written)

    @property
    def array(self):
        """The full-resolution array (level ``0``)."""
        return self.arrays[0]

    # ----------------------------------------------------------------- opening

    @classmethod
    def create(cls, spec, shape, dtype, voxel_size=None, job: str | None = None,
               labels: bool = False) -> "ZarrOutput":
        """Start writing ``spec``, or resume it when it holds the same ``job``, shape and dtype.

        What is resumed or replaced: an unfinished image of this library at ``spec`` (killed,
        failed) is resumed with the same ``job``, else written again in place; anything else
        already there is replaced only by :meth:`finish` (written beside it until then).
        ``labels``: a label image (its levels are 2 x 2 modes; NGFF ``image-label`` metadata).
        """
        path, inner = split_zarr(spec)
        zarr = import_zarr(path)
        check_zarr_output(path, inner)
        target = path / inner if inner else path
        staging = staging_folder(target)
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        shapes = pyramid_shapes(shape)
        state = {"complete": False, "job": job, "shape": list(shape), "dtype": dtype.str, "levels": len(shapes),
                 "labels": bool(labels)}
        of_image = bool(labels and inner and target.parent.name == "labels")  # IMAGE.zarr:labels/NAME
        if of_image:
            _check_label_of_image(target, shape)

        def same_job(previous) -> bool:
            return job is not None and previous is not None and all(
                previous.get(k, default) == state[k] for k, default in
                (("job", None), ("shape", None), ("dtype", None), ("levels", 1), ("labels", False)))

        previous = cls._state_of(zarr, target)
        in_place = not target.exists() or same_job(previous) or (previous is not None
                                                                  and not previous.get("complete"))
        folder = target if in_place else staging
        if not in_place:
            previous = cls._state_of(zarr, staging)
        if same_job(previous):
            if in_place and staging.exists():
                shutil.rmtree(staging)  # ours, left by an earlier run
            group = zarr.open_group(str(folder), mode="r+")
            done = set(range(shape[-3])) if previous.get("complete") else cls._marked(folder)
            return cls(spec, [group[str(k)] for k in range(len(shapes))], folder, shape, dtype, done, target,
                       labels)
        with deferred():  # a signal waits: no half-removed folder, no zarr temporary file left
            if in_place and target.exists():
                shutil.rmtree(target)  # an unfinished image of this library (another job): never data
            if staging.exists():
                shutil.rmtree(staging)  # ours, left by an earlier run
            # a group inside an existing zarr takes its format; a new zarr the installed zarr's newest
            existing = zarr.open_group(str(path), mode="r") if inner and _is_zarr_folder(path) else None
            fmt = {} if _zarr_major(zarr) < 3 else {
                "zarr_format": zarr_format_of(existing) if existing is not None else 3}
            if in_place:
                root = zarr.open_group(str(path), mode="a", **fmt)
                group = root.require_group(inner) if inner else root
            else:
                group = zarr.open_group(str(staging), mode="w", **fmt)
            create = group.create_array if hasattr(group, "create_array") else group.create_dataset
            names = {"dimension_names": (["c"] if len(shape) == 4 else []) + list("zyx")} \
                if zarr_format_of(group) >= 3 else {}
            arrays = [create(str(k), shape=level, chunks=_chunks(level), dtype=dtype, fill_value=0, overwrite=True,
                             **names) for k, level in enumerate(shapes)]
            write_multiscales(group, shapes, voxel_size, target.name if inner else path.stem, labels, of_image)
            group.attrs.update({STATE_KEY: state})
            (folder / DONE_FOLDER).mkdir(exist_ok=True)
        return cls(spec, arrays, folder, shape, dtype, set(), target, labels)

    @classmethod
    def attach(cls, spec) -> "ZarrOutput":
        """Open an image :meth:`create` started, to write blocks of it (in a worker)."""
        path, inner = split_zarr(spec)
        zarr = import_zarr(path)
        target = path / inner if inner else path
        folder = staging_folder(target)
        state = cls._state_of(zarr, folder)
        if not (isinstance(state, dict) and not state.get("complete")):
            folder, state = target, cls._state_of(zarr, target)
        if state is None:
            raise VolumeError(f"{spec}: not an image started by this library (no {STATE_KEY} attribute)")
        group = zarr.open_group(str(folder), mode="r+")
        return cls(spec, [group[str(k)] for k in range(state.get("levels", 1))], folder, state["shape"],
                   state["dtype"], set(), target, bool(state.get("labels")))

    @staticmethod
    def _state_of(zarr, folder: Path) -> dict | None:
        if not folder.is_dir() or not _is_zarr_folder(folder):
            return None
        try:
            state = dict(zarr.open_group(str(folder), mode="r").attrs).get(STATE_KEY)
        except Exception:
            return None
        return state if isinstance(state, dict) else None

    @staticmethod
    def _marked(folder: Path) -> set[int]:
        done: set[int] = set()
        marks = folder / DONE_FOLDER
        for f in marks.iterdir() if marks.is_dir() else ():
            match = re.fullmatch(r"(\d+)-(\d+)", f.name)
            if match:
                done.update(range(int(match.group(1)), int(match.group(2))))
        return done

    # ----------------------------------------------------------------- writing

    def is_written(self, z0: int, z1: int) -> bool:
        """Whether slices ``z0:z1`` were written and marked (by this run or a resumed one)."""
        return all(z in self.done for z in range(z0, z1))

    def write_at(self, block: np.ndarray, z0: int) -> None:
        """Write ``block`` (``(n, Y, X)`` or ``(C, n, Y, X)``, stored dtype) at slice ``z0``, then mark it."""
        n = block.shape[-3]
        with deferred():  # zarr writes chunks in its own threads: a signal waits until they and the mark are done
            for k, array in enumerate(self.arrays):  # every level: the slices' own chunks
                block = downsample(block, self.labels) if k else block
                array[..., z0:z0 + n, :, :] = block
            (self.folder / DONE_FOLDER).mkdir(exist_ok=True)
            (self.folder / DONE_FOLDER / f"{z0}-{z0 + n}").touch()  # after the chunks: a kill before it redoes them
        self.done.update(range(z0, z0 + n))

    def finish(self) -> None:
        """Mark the image complete (VolumeError if a slice is not written, checked on disk); an
        image written beside the zarr it replaces is then renamed over it."""
        missing = sorted(set(range(self.nz)) - (self.done | self._marked(self.folder)))
        if missing:
            raise VolumeError(f"{self.spec}: {len(missing)} of {self.nz} slices not written (first {missing[0]})")
        zarr = import_zarr(self.spec)
        with deferred():
            group = zarr.open_group(str(self.folder), mode="r+")
            state = dict(dict(group.attrs)[STATE_KEY], complete=True)
            group.attrs.update({STATE_KEY: state})
            shutil.rmtree(self.folder / DONE_FOLDER, ignore_errors=True)
        self.done = set(range(self.nz))
        if self.folder != self.target:
            old = self.folder.with_name(self.folder.name[:-len(STAGING_SUFFIX)] + ".emseg-old")
            with deferred():  # a signal waits: never the old image moved aside and the new one not in place
                if old.exists():
                    shutil.rmtree(old)
                if self.target.exists():
                    os.rename(self.target, old)
                os.rename(self.folder, self.target)
                shutil.rmtree(old, ignore_errors=True)
            self.folder = self.target
        if self.labels and self.target.parent.name == "labels" and _is_zarr_folder(self.target.parent):
            register_label(self.target.parent, self.target.name)  # complete: now viewers may list it
