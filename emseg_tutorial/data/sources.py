"""The data-source switch: which volumes the chapters and the command line work on.

The switch is a setting of the :class:`~emseg_tutorial.session.Session` that
:func:`emseg_tutorial.setup` returns (from its ``data`` argument or ``EMSEG_DATA``); the loaders
here take that session (or a bare :class:`~emseg_tutorial.presets.Preset`, which means the
synthetic twins) and read no environment variable themselves.

``synthetic`` (the default) makes the twins of :mod:`.synthetic`, sized by the
preset: the *train* split uses ``preset.seed`` and the *test* split ``preset.seed + 1``, a
volume no training step ever sees. With a session, the twins are kept in its runs folder
(:func:`twin_cache_path`, keyed on domain, shape, seed and
:data:`~.synthetic.TWIN_VERSION`; the file also holds the hash of the twins' own source,
:func:`twin_source`, and one drawn by other code is drawn again), so later chapters and runs
load them instead of drawing them again, saying so in one line. ``real`` uses downloaded, checksummed datasets
(:mod:`.registry`, :mod:`.real`): the SNEMI3D train stack as target and, as source, your
FIBSEM volume (``EMSEG_FIBSEM`` + ``EMSEG_FIBSEM_LABELS``) or the public 4-class VNC stack;
there the first 75 % of the slices are the train split and the last 25 % the test split,
each cropped to the preset's shape. Without network and without the files in the cache,
``real`` raises :class:`~.registry.DownloadError` with a one-line message.
:func:`describe_source` says in a short paragraph which data the chapters use.

Examples
--------
>>> from emseg_tutorial.presets import get_preset
>>> load_domain("fibsem", get_preset("ci"), split="test").shape
(16, 128, 128)
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Protocol, Union

import numpy as np

from .. import _source
from ..presets import Preset
from ..progress import note
from ..store import atomic_write
from .errors import DataSourceError  # noqa: F401 (re-exported: the error load_domain raises)
from .real import FIBSEM_ENV, fibsem_paths, load_real_domain
from .registry import DATASETS, cache_dir
from .synthetic import DOMAINS, TWIN_VERSION, domain_params, make_volume
from .volume import Volume

SPLITS = ("train", "test")
DATA_SOURCES = ("synthetic", "real")


class DataSettings(Protocol):
    """What the loaders read of a :class:`~emseg_tutorial.session.Session` (the session sits
    above this module, so it is described here rather than imported)."""

    preset: Preset
    data: str
    cache: os.PathLike | None
    fibsem_image: str | None
    fibsem_labels: str | None


#: What the loaders take: a session, or a bare preset (which means the synthetic twins).
Settings = Union[DataSettings, Preset]


def _preset_and_source(settings: Settings) -> tuple[Preset, str]:
    if isinstance(settings, Preset):
        return settings, "synthetic"
    if not isinstance(getattr(settings, "preset", None), Preset):
        raise TypeError(f"expected a Session (emseg_tutorial.setup()) or a Preset, got {type(settings).__name__}")
    return settings.preset, settings.data


def split_seed(preset: Preset, split: str) -> int:
    """Seed of a split: ``preset.seed`` for train, ``preset.seed + 1`` for held-out test."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return preset.seed + SPLITS.index(split)


def load_domain(domain: str, settings: Settings, split: str = "train") -> Volume:
    """Return the volume of ``domain`` (``"fibsem"`` source or ``"snemi"`` target) for ``split``.

    Parameters
    ----------
    domain : {"fibsem", "snemi"}
    settings : Session or Preset
        The session of :func:`emseg_tutorial.setup` (its preset sizes the volumes, its ``data``
        setting picks twins or real data), or a preset alone for the synthetic twins.
    split : {"train", "test"}
        ``"test"`` is a different volume, held out from training and model selection.

    Raises
    ------
    DataSourceError
        ``real`` data that is neither cached nor downloadable (a
        :class:`~.registry.DownloadError`, one line naming the file and where to put it).
    """
    preset, source = _preset_and_source(settings)
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    if source == "real":
        return load_real_domain(domain, preset, split, cache=settings.cache,
                                fibsem=(settings.fibsem_image, settings.fibsem_labels))
    shape = preset.source_shape if domain == "fibsem" else preset.target_shape
    seed = split_seed(preset, split)
    runs = getattr(settings, "runs", None)
    if runs is None:  # a bare preset: nowhere to keep the volume
        return make_volume(domain, shape, seed=seed)
    return cached_twin(domain, shape, seed, runs)


#: The modules that draw the twins (each a module or a package: every module under the name):
#: the generator, and the label codes it writes.
TWIN_MODULES = (f"{__package__}.synthetic", f"{__package__.rpartition('.')[0]}.labels")


def twin_source() -> str:
    """Hash of the twins' source (:data:`TWIN_MODULES`): a cached twin drawn by other code is drawn
    again, while edits elsewhere in the package (``losses.py``, say) keep the cache.

    Examples
    --------
    >>> len(twin_source())
    12
    """
    return _source.source_hash(TWIN_MODULES)


def twin_cache_path(runs: str | os.PathLike, domain: str, shape, seed: int,
                    version: int = TWIN_VERSION) -> Path:
    """Where :func:`cached_twin` keeps a twin: ``<runs>/twins/<domain>-<Z>x<Y>x<X>-seed<seed>-v<version>.npz``.

    Examples
    --------
    >>> twin_cache_path("runs", "snemi", (8, 64, 64), 1).as_posix()
    'runs/twins/snemi-8x64x64-seed1-v5.npz'
    """
    z, y, x = (int(s) for s in shape)
    return Path(runs) / "twins" / f"{domain}-{z}x{y}x{x}-seed{int(seed)}-v{int(version)}.npz"


def _read_twin(path: Path, domain: str, shape, seed: int) -> Volume | None:
    """The cached twin at ``path``, or None when it is missing, unreadable or not what it says."""
    try:
        with np.load(path, allow_pickle=False) as f:
            image, labels = f["image"], f["labels"]
            version = int(f["version"])
            source = str(f["source"]) if "source" in f.files else None
    except (OSError, KeyError, IndexError, ValueError, TypeError, AttributeError, EOFError,
            zipfile.BadZipFile):
        return None
    if (version != TWIN_VERSION or source != twin_source() or image.shape != tuple(shape) or labels.shape != tuple(shape)
            or image.dtype != np.uint8 or labels.dtype != np.uint8):
        return None
    return Volume(image=image, labels=labels, voxel_size=domain_params(domain).voxel_size,
                  name=f"synthetic-{domain}-seed{int(seed)}")


def cached_twin(domain: str, shape, seed: int, runs: str | os.PathLike) -> Volume:
    """:func:`~.synthetic.make_volume` kept in ``runs``: loaded when cached, else made and saved.

    The file (:func:`twin_cache_path`) is written atomically; one that cannot be read, or holds
    something else (another shape, version, dtype or twin source, :func:`twin_source`), is made
    again and replaced. A twin read back says so in one line.
    """
    path = twin_cache_path(runs, domain, shape, seed)
    if path.exists():
        vol = _read_twin(path, domain, shape, seed)
        if vol is not None:
            z, y, x = vol.shape
            note(f"reused twin {domain} {z}x{y}x{x} (seed {int(seed)}) from {path}")
            return vol
    vol = make_volume(domain, shape, seed=seed)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, image=vol.image, labels=vol.labels, version=np.int64(TWIN_VERSION),
                     source=np.str_(twin_source()))

    atomic_write(path, write)
    return vol


def load_pair(settings: Settings, split: str = "train") -> tuple[Volume, Volume]:
    """``(source volume, target volume)`` for ``split``: the FIBSEM and SNEMI3D (twins)."""
    return load_domain("fibsem", settings, split), load_domain("snemi", settings, split)


def describe_source(settings: Settings) -> str:
    """A short markdown paragraph naming the data the chapters use, with citations.

    Downloads nothing.

    Examples
    --------
    >>> from emseg_tutorial.presets import get_preset
    >>> describe_source(get_preset("ci")).startswith("The chapters use the **synthetic twins**")
    True
    """
    _, source = _preset_and_source(settings)
    if source == "synthetic":
        return ("The chapters use the **synthetic twins** of the paper's volumes "
                "(`EMSEG_DATA=synthetic`, the default): as source an isotropic FIBSEM-like volume with "
                "four classes (boundary, cytoplasm, mitochondria, glia), as target an anisotropic "
                "SNEMI3D-like volume without glia whose labels serve only to evaluate. Both are drawn "
                "from a seed (`emseg_tutorial.data.synthetic`), so everything runs offline; set "
                "`EMSEG_DATA=real` to use the downloaded datasets instead.")

    try:
        paths = fibsem_paths(settings.fibsem_image, settings.fibsem_labels)
    except ValueError as err:
        paths, problem = None, f" ({err})"
    else:
        problem = ""
    vnc, snemi = DATASETS["vnc"], DATASETS["snemi3d"]
    if paths:
        src = f"your FIBSEM volume `{paths[0]}` with labels `{paths[1]}` (from `{FIBSEM_ENV}`)"
    else:
        src = (f"the public 4-class stand-in for the paper's FIBSEM volume, {vnc.title} "
               f"({vnc.licence.split(' (')[0]}; cite {vnc.citation}){problem}")
    return (f"The chapters use **real data** (`EMSEG_DATA=real`). Source: {src}. Target: {snemi.title}, "
            f"boundary labels from its neuron ids used only to evaluate (cite {snemi.citation}). The first "
            f"75 % of each stack's slices are the train split, the last 25 % the test split, each cropped to "
            f"the preset's shape. Files are checksummed and cached in `{cache_dir(settings.cache)}` (`EMSEG_CACHE`).")
