"""Checking outputs before long work: every command's one check of the files it will write.

* :func:`check_outputs`: a known format, a parent that is a writable folder, an existing
  ``.h5`` that is really HDF5, no output that is, contains or sits inside an input or another
  output (paths resolved, so ``./a.tif`` and a link to it are the same file; zarr stores and
  groups, HDF5 datasets and input folders included);
* :func:`check_output_folder`: a ``train``/``adapt`` output folder and the files it will hold
  (a folder that already holds a run only with ``overwrite``);
* :func:`check_output_spec`: one output spec.

Each problem is one :class:`~.errors.VolumeError` line naming the output (and the argument it
came from). The writers (:mod:`.writers`) run :func:`check_outputs` again before they write.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from .errors import VolumeError
from .specs import HDF5_SUFFIXES, NPY_SUFFIX, TIFF_SUFFIXES, import_h5py, split_spec
from .zarr_format import check_zarr_output, is_zarr, split_zarr

__all__ = ["check_outputs", "check_output_folder", "check_output_spec", "check_file_target", "hdf5_target_problem"]


def _who(spec, label: str | None) -> str:
    """How a message names an output or input: ``"--out pred.tif"`` or ``"pred.tif"``."""
    return f"{label} {os.fspath(spec)}" if label else os.fspath(spec)


def check_file_target(path: Path, who: str) -> None:
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


def hdf5_target_problem(file, dataset: str) -> str | None:
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
    check_file_target(path, who)
    if suffix in HDF5_SUFFIXES and path.is_file():
        h5py = import_h5py(path)
        if not h5py.is_hdf5(path):
            raise VolumeError(f"{who}: {path} exists but is not an HDF5 file; remove it or choose another name")
        try:
            with h5py.File(path, "r") as f:
                problem = hdf5_target_problem(f, dataset)
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


def _location(spec: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where a spec's data lies: the resolved path's parts, and the dataset's parts inside an HDF5 file.

    A zarr spec ``store.zarr:a/b`` is the folder ``store.zarr/a/b`` (zarr groups and arrays
    are folders), so ``data.zarr`` contains ``data.zarr:raw``.
    """
    store, inner = split_zarr(spec)
    if is_zarr(store):
        return Path(os.path.realpath(store / inner if inner else store)).parts, ()
    path, dataset = split_spec(spec)
    return Path(os.path.realpath(path)).parts, tuple(p for p in (dataset or "").split("/") if p)


def _overlap(a: tuple, b: tuple) -> str | None:
    """How location ``a`` relates to ``b``: ``"is"``, ``"contains"``, ``"is inside"``, or None (apart)."""
    (fa, ia), (fb, ib) = a, b
    if fa == fb:
        first, second = ia, ib
    elif fa[:len(fb)] == fb or fb[:len(fa)] == fa:
        if os.path.isfile(os.path.join(*min(fa, fb, key=len))):
            return None  # nothing lies under a file: check_output_spec says so
        first, second = fa, fb
    else:
        return None
    n = min(len(first), len(second))
    if first[:n] != second[:n]:
        return None
    return "is" if len(first) == len(second) else "contains" if len(first) < len(second) else "is inside"


def _label_of(output: tuple, image: tuple) -> bool:
    """Whether the location ``output`` is an NGFF label ``labels/NAME`` of the zarr image at
    ``image`` (the image group or one of its levels): adding it leaves the image as it is."""
    (out, _), (img, _) = output, image  # a zarr spec's inner path is part of its folder
    if len(out) < 3 or out[-2] != "labels" or not any(p.lower().endswith(".zarr") for p in out[:-2]):
        return False
    group = out[:-2]
    return img == group or (img[:-1] == group and img[-1].isdigit())


def _refuse_same(outputs: list[tuple[str | None, str]], inputs: list[tuple[str | None, str]]) -> None:
    """Raise VolumeError if an output is, contains or sits inside an input or another output.

    Paths are resolved (links, ``./``), zarr specs are the folders they name, HDF5 datasets
    compare by their path inside the file (``f.h5:a`` holds ``f.h5:a/b``).
    """
    taken = [(label, spec, "input", _location(spec)) for label, spec in inputs]
    for label, spec in outputs:
        here = _location(spec)
        for other, other_spec, kind, there in taken:
            how = _overlap(here, there)
            if how == "is inside" and kind == "input" and _label_of(here, there):
                continue  # predicted labels added to the input image's own labels/ group
            if how == "is":
                raise VolumeError(f"{_who(spec, label)}: is also the {kind} {_who(other_spec, other)}; writing it "
                                  f"would replace that data; give each output its own file")
            if how:
                raise VolumeError(f"{_who(spec, label)}: {how} the {kind} {_who(other_spec, other)}; writing it "
                                  f"would {'replace' if how == 'contains' else 'change'} that data; name an output "
                                  f"outside it")
        taken.append((label, spec, "output", here))


def check_outputs(outputs, inputs=None) -> None:
    """Check every output of a command before any work starts (the one check all commands use).

    Each output passes :func:`check_output_spec`, and none may be, contain or sit inside an
    input or another output: paths are resolved, so ``./a.tif`` and a link to it are the same
    file; a zarr spec ``store.zarr:path`` is the folder ``store.zarr/path`` (so ``data.zarr``
    contains ``data.zarr:raw``, and ``vol.zarr:0`` is inside ``vol.zarr``); an HDF5 dataset
    ``f.h5:a`` contains ``f.h5:a/b``; a file inside an input folder (of slices) sits inside it.
    The one exception: an NGFF label ``IMAGE.zarr:labels/NAME`` of the input image ``IMAGE.zarr``
    (or of its level ``IMAGE.zarr:0``), which adds to the zarr without changing the image.

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
    >>> check_outputs({"--out": "data.zarr"}, {"--image": "data.zarr:raw"})
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: --out data.zarr: contains the input --image data.zarr:raw; writing it would replace that data; name an output outside it
    >>> check_outputs({"--out": "data.zarr:pred"}, {"--image": "data.zarr:raw"})  # beside it: fine
    >>> check_outputs({"--out": "img.zarr:labels/pred"}, {"--image": "img.zarr"})  # a label of the image
    """
    outputs, inputs = _labelled(outputs), _labelled(inputs)
    _refuse_same(outputs, inputs)
    for label, spec in outputs:
        check_output_spec(spec, label)


def check_output_folder(folder: str | os.PathLike, label: str | None = None, files: Sequence[str] = (),
                        inputs=None, *, run_files: Sequence[str] = (), overwrite: bool = False) -> Path:
    """Check an output folder and the files a command will write in it, before any work starts.

    The folder must not be a file; when missing, its nearest existing parent must be a folder
    (it is made by the first write, so a failed command leaves nothing); files must be writable
    there; none of ``files`` may be an input (``inputs`` as in :func:`check_outputs`) or a folder.
    A folder that already holds a run (any of ``files`` or ``run_files``) is refused unless
    ``overwrite`` (the CLI's ``--overwrite``, or ``--resume`` continuing the run in it).

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
    emseg_tutorial.data.errors.VolumeError: --out .../outputs.py: exists and is a file, not a folder
    """
    out = Path(folder)
    who = _who(folder, label)
    if out.exists() and not out.is_dir():
        raise VolumeError(f"{who}: exists and is a file, not a folder")
    targets = [(f"{label or 'output'} file", os.fspath(out / name)) for name in files]
    _refuse_same(targets, _labelled(inputs))
    check_file_target(out / (files[0] if files else ".probe"), who)
    for name in files:
        if (out / name).is_dir():
            raise VolumeError(f"{who}: {out / name} is a folder; it must be free for the output file")
    held = [name for name in dict.fromkeys([*files, *run_files]) if (out / name).exists()] if out.is_dir() else []
    if held and not overwrite:
        resume = f", --resume {os.fspath(folder)} to continue it" if any(n in files and n.endswith("state.pt") for n in held) else ""  # this command's own state
        raise VolumeError(f"{who}: already holds a run ({', '.join(held)}); give --overwrite to replace it{resume}, "
                          f"or another folder")
    return out
