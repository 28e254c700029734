"""The data-source switch: which volumes the chapters and the command line work on.

``EMSEG_DATA=synthetic`` (the default) makes the twins of :mod:`.synthetic`, sized by the
preset: the *train* split uses ``preset.seed`` and the *test* split ``preset.seed + 1``, a
volume no training step ever sees. ``EMSEG_DATA=real`` is reserved for the downloaded,
checksummed datasets (SNEMI3D target, FIBSEM or a public 4-class stand-in as source).

Examples
--------
>>> from emseg_tutorial.presets import get_preset
>>> load_domain("fibsem", get_preset("ci"), split="test").shape
(16, 128, 128)
"""

from __future__ import annotations

from ..presets import Preset, data_source, get_preset
from .synthetic import DOMAINS, make_volume
from .volume import Volume

SPLITS = ("train", "test")


class DataSourceError(RuntimeError):
    """The requested data source cannot provide the volume."""


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
    """
    preset = preset or get_preset()
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    source = data_source(source)
    if source == "real":
        raise DataSourceError(
            "EMSEG_DATA=real: the downloaded datasets are not available in this version of "
            "emseg-tutorial; unset EMSEG_DATA to use the synthetic twins, or pass your own "
            "volumes to the command line (python -m emseg_tutorial train --image ... --labels ...)")
    shape = preset.source_shape if domain == "fibsem" else preset.target_shape
    return make_volume(domain, shape, seed=split_seed(preset, split))


def load_pair(preset: Preset | None = None, split: str = "train",
              source: str | None = None) -> tuple[Volume, Volume]:
    """``(source volume, target volume)`` for ``split``: the FIBSEM and SNEMI3D (twins)."""
    return load_domain("fibsem", preset, split, source), load_domain("snemi", preset, split, source)
