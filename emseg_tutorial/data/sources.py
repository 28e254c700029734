"""The data-source switch: which volumes the chapters and the command line work on.

``EMSEG_DATA=synthetic`` (the default) makes the twins of :mod:`.synthetic`, sized by the
preset: the *train* split uses ``preset.seed`` and the *test* split ``preset.seed + 1``, a
volume no training step ever sees. ``EMSEG_DATA=real`` uses downloaded, checksummed datasets
(:mod:`.registry`, :mod:`.real`): the SNEMI3D train stack as target and, as source, your
FIBSEM volume (``EMSEG_FIBSEM`` + ``EMSEG_FIBSEM_LABELS``) or the public 4-class VNC stack;
there the first 75 % of the slices are the train split and the last 25 % the test split,
each cropped to the preset's shape. Without network and without the files in the cache,
``EMSEG_DATA=real`` raises :class:`~.registry.DownloadError` with a one-line message.
:func:`describe_source` says in a short paragraph which data the chapters use.

Examples
--------
>>> from emseg_tutorial.presets import get_preset
>>> load_domain("fibsem", get_preset("ci"), split="test").shape
(16, 128, 128)
"""

from __future__ import annotations

from ..presets import Preset, data_source, get_preset
from .errors import DataSourceError  # noqa: F401 (re-exported: the error load_domain raises)
from .synthetic import DOMAINS, make_volume
from .volume import Volume

SPLITS = ("train", "test")


def split_seed(preset: Preset, split: str) -> int:
    """Seed of a split: ``preset.seed`` for train, ``preset.seed + 1`` for held-out test."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return preset.seed + SPLITS.index(split)


def load_domain(domain: str, preset: Preset | None = None, split: str = "train",
                source: str | None = None) -> Volume:
    """Return the volume of ``domain`` (``"fibsem"`` source or ``"snemi"`` target) for ``split``.

    Parameters
    ----------
    domain : {"fibsem", "snemi"}
    preset : Preset, optional
        Sizes; default :func:`~emseg_tutorial.presets.get_preset`.
    split : {"train", "test"}
        ``"test"`` is a different random volume, held out from training and model selection.
    source : {"synthetic", "real"}, optional
        Default from ``EMSEG_DATA``.

    Raises
    ------
    DataSourceError
        ``real`` data that is neither cached nor downloadable (a
        :class:`~.registry.DownloadError`, one line naming the file and where to put it).
    """
    preset = preset or get_preset()
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    source = data_source(source)
    if source == "real":
        from .real import load_real_domain

        return load_real_domain(domain, preset, split)
    shape = preset.source_shape if domain == "fibsem" else preset.target_shape
    return make_volume(domain, shape, seed=split_seed(preset, split))


def load_pair(preset: Preset | None = None, split: str = "train",
              source: str | None = None) -> tuple[Volume, Volume]:
    """``(source volume, target volume)`` for ``split``: the FIBSEM and SNEMI3D (twins)."""
    return load_domain("fibsem", preset, split, source), load_domain("snemi", preset, split, source)


def describe_source(source: str | None = None) -> str:
    """A short markdown paragraph naming the data the chapters use, with citations.

    Reads only the environment (``EMSEG_DATA``, ``EMSEG_FIBSEM``, ``EMSEG_FIBSEM_LABELS``,
    ``EMSEG_CACHE``); downloads nothing.

    Examples
    --------
    >>> describe_source("synthetic").startswith("The chapters use the **synthetic twins**")
    True
    """
    source = data_source(source)
    if source == "synthetic":
        return ("The chapters use the **synthetic twins** of the paper's volumes "
                "(`EMSEG_DATA=synthetic`, the default): as source an isotropic FIBSEM-like volume with "
                "four classes (boundary, cytoplasm, mitochondria, glia), as target an anisotropic "
                "SNEMI3D-like volume without glia whose labels serve only to evaluate. Both are drawn "
                "from a seed (`emseg_tutorial.data.synthetic`), so everything runs offline; set "
                "`EMSEG_DATA=real` to use the downloaded datasets instead.")
    from .real import FIBSEM_ENV, fibsem_paths
    from .registry import DATASETS, cache_dir

    try:
        paths = fibsem_paths()
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
            f"the preset's shape. Files are checksummed and cached in `{cache_dir()}` (`EMSEG_CACHE`).")
