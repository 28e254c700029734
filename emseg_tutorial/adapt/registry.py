"""Every adaptation method as one record, registered once: what the loop, the CLI and chapter 6 read.

A :class:`Method` says everything the rest of the package needs to know about a method: its
defaults (:class:`~.loop.AdaptConfig` settings it fills when left ``None``), whether it needs
the source image, what its discriminator sees (and so its input channels), whether truth maps
are the real side, its step function (trained methods) or its one-pass function, the files it
writes, which :class:`~.loop.AdaptConfig` options it reads, and whether it is an ablation
variant of another method or deterministic. :func:`register` adds one; :data:`METHOD_RECORDS`
(a read-only view), :func:`get_method` and :func:`method_names` are what everything reads.
No other module names a method.

================  =======================================================================
discriminator     what it compares (``in_channels``: label-map channels + extra)
================  =======================================================================
``"maps"``        label maps: truth or source softmax vs target softmax (+0)
``"pairs"``       (image, label map) pairs (+1: the image channel)
``"self-info"``   self-information maps ``-p log p`` (+0)
``"none"``        no discriminator
================  =======================================================================

Examples
--------
>>> method_names()
('paper', 'conditional-paper', 'conditional', 'adaptsegnet', 'advent', 'selftrain', 'adabn', 'histmatch')
>>> method_names(ablations=True)[-3:]
('conditional-raw', 'paper-soft-real', 'paper-hard-fake')
>>> get_method("conditional-raw").variant_of, dict(get_method("conditional-raw").overrides)
('conditional', {'condition_image': 'raw'})
>>> get_method("histmatch").files
('model.pt', 'history.json', 'target_matched.tif')
>>> get_method("paper").discriminator_channels(2), get_method("conditional").discriminator_channels(2)
(2, 3)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..data.histmatch import match_to_source
from ..data.volume import Volume
from .adabn import adapt_batchnorm
from .steps import (DISCRIMINATOR_INPUTS, adaptsegnet_step, advent_step, conditional_step, paper_step,
                    selftrain_step)

#: the resumable state of a trained method, in its output folder
STATE_FILE = "adapt_state.pt"
#: what every method writes: the adapted U-Net and the run's history
MODEL_FILES = ("model.pt", "history.json")
DISCRIMINATOR_FILE = "discriminator.pt"

#: :class:`~.loop.AdaptConfig` options every trained method reads
TRAINING = frozenset({"task", "epochs", "steps_per_epoch", "batch_size", "patch", "lr_g", "source_weight",
                      "source_weights", "report_stride", "seed", "device", "precision", "keep", "patience"})
#: ... and those a discriminator adds
ADVERSARIAL = TRAINING | {"lr_d", "adv_weight", "d_steps", "discriminator"}
#: ... where truth maps are the real side
TRUTH_AS_REAL = frozenset({"real_smoothing", "hard_fake"})
#: options a one-pass method reads
ONE_PASS = frozenset({"task", "device", "report_stride"})


@dataclass(frozen=True)
class OnePassResult:
    """What a one-pass method returns: the adapted model, the target (and labelled target) as
    the model sees them, and volumes to write (file name -> volume, :attr:`Method.outputs`)."""

    model: torch.nn.Module
    target_image: np.ndarray
    target_eval: Volume | None
    volumes: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """One adaptation method (or an ablation variant of one); see the module docstring.

    Attributes
    ----------
    name, summary : str
        The method's name (``--method``) and one line on what it does.
    options : frozenset of str
        :class:`~.loop.AdaptConfig` options the method reads; the command line refuses a flag
        for any other.
    defaults : mapping
        :class:`~.loop.AdaptConfig` settings filled where the caller leaves them ``None``.
    step : callable, optional
        ``step(ctx: StepContext) -> dict`` of statistics: one training step (trained methods).
    one_pass : callable, optional
        ``one_pass(model, source_image, target_image, target_eval, *, settings, normalizer, device,
        progress) -> OnePassResult`` (methods without training): ``settings`` are the run's
        settings of the record's ``options``, ``normalizer`` the target volume's one
        :class:`~emseg_tutorial.data.normalize.Normalizer`.
    discriminator : {"maps", "pairs", "self-info", "none"}
        What its discriminator sees (:data:`~.steps.DISCRIMINATOR_INPUTS`).
    truth_is_real : bool
        Truth maps are the discriminator's real side (``real_smoothing`` and ``hard_fake`` apply).
    teacher : bool
        Keeps a mean teacher (self-training).
    source_image : bool or callable
        Whether the source image is needed, or ``f(settings: dict) -> bool`` of the run's
        settings (an :class:`~.loop.AdaptConfig` as a dict, or a one-pass method's settings).
    outputs : tuple of str
        Files beside the model a one-pass method writes (keys of ``OnePassResult.volumes``).
    variant_of : str, optional
        The method this ablation variant runs, with ``overrides`` winning over the caller's settings.
    overrides : mapping
    deterministic : bool
        Gives the same result at every seed (run once in comparisons).
    """

    name: str
    summary: str
    options: frozenset = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    step: Callable | None = None
    one_pass: Callable | None = None
    discriminator: str = "none"
    truth_is_real: bool = False
    teacher: bool = False
    source_image: bool | Callable[[Any], bool] = True
    outputs: tuple[str, ...] = ()
    variant_of: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    deterministic: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"method name must be a non-empty string, got {self.name!r}")
        if (self.step is None) == (self.one_pass is None):
            raise ValueError(f"method {self.name!r}: give exactly one of step (trained) and one_pass")
        if self.discriminator not in (*DISCRIMINATOR_INPUTS, "none"):
            raise ValueError(f"method {self.name!r}: discriminator must be one of "
                             f"{(*DISCRIMINATOR_INPUTS, 'none')}, got {self.discriminator!r}")
        if self.one_pass is not None and (self.discriminator != "none" or self.teacher):
            raise ValueError(f"method {self.name!r}: a one-pass method has no discriminator or teacher")
        if self.truth_is_real and self.discriminator == "none":
            raise ValueError(f"method {self.name!r}: truth_is_real needs a discriminator")
        if self.step is not None and self.outputs:
            raise ValueError(f"method {self.name!r}: only one-pass methods write extra outputs")
        for what in ("defaults", "overrides"):
            unread = set(getattr(self, what)) - set(self.options)
            if unread:
                raise ValueError(f"method {self.name!r}: {what} {sorted(unread)} are not among its options")
            object.__setattr__(self, what, MappingProxyType(dict(getattr(self, what))))
        object.__setattr__(self, "options", frozenset(self.options))

    @property
    def trains(self) -> bool:
        """Trained in the loop of :mod:`.loop` (and so resumable); else one pass."""
        return self.step is not None

    @property
    def resumes(self) -> bool:
        """A run cut short continues from its saved state: the trained methods (one-pass ones
        have nothing to continue)."""
        return self.trains

    @property
    def files(self) -> tuple[str, ...]:
        """The files a run writes in its output folder (the command line's ``--out``)."""
        return (MODEL_FILES + ((STATE_FILE,) if self.trains else ())
                + ((DISCRIMINATOR_FILE,) if self.discriminator != "none" else ()) + self.outputs)

    def discriminator_channels(self, n_classes: int) -> int | None:
        """The discriminator's ``in_channels`` for ``n_classes`` label maps (None: no discriminator)."""
        if self.discriminator == "none":
            return None
        return n_classes + DISCRIMINATOR_INPUTS[self.discriminator][0]

    def needs_source_image(self, settings: Mapping[str, Any] | None = None) -> bool:
        """Whether a run with ``settings`` (a dict; an :class:`~.loop.AdaptConfig` is turned into
        one) needs the source image, not only its labels."""
        if not callable(self.source_image):
            return bool(self.source_image)
        if dataclasses.is_dataclass(settings):
            settings = dataclasses.asdict(settings)
        return bool(self.source_image(dict(settings or {})))

    def check_source_image(self, settings, source_image) -> None:
        """ValueError naming the method unless the source image is given where it is needed."""
        if source_image is None and self.needs_source_image(settings):
            raise ValueError(f"method {self.name!r} needs the source image (source_image / --source-image), "
                             "not only its labels")


_REGISTRY: dict[str, Method] = {}
#: name -> :class:`Method`, in registration order (read-only; :func:`register` adds)
METHOD_RECORDS: Mapping[str, Method] = MappingProxyType(_REGISTRY)


def register(record: Method) -> Method:
    """Add ``record`` (a :class:`Method`); returns it. A name registers once.

    The loop, :func:`~.methods.run_method`, the command line (``adapt --method``) and chapter 6's
    comparison then run it; :func:`unregister` removes it again.

    Examples
    --------
    >>> def unchanged(model, source_image, target_image, target_eval, **run):
    ...     return OnePassResult(model, target_image, target_eval)
    >>> register(Method("unchanged", "the source model as it is", ONE_PASS, one_pass=unchanged,
    ...                 source_image=False, deterministic=True)).files
    ('model.pt', 'history.json')
    >>> "unchanged" in method_names(), unregister("unchanged"), "unchanged" in method_names()
    (True, None, False)
    >>> register(get_method("paper"))
    Traceback (most recent call last):
    ...
    ValueError: method 'paper' is registered already
    """
    if not isinstance(record, Method):
        raise TypeError(f"register takes a Method, got {type(record).__name__}")
    if record.name in _REGISTRY:
        raise ValueError(f"method {record.name!r} is registered already")
    if record.variant_of is not None and record.variant_of not in _REGISTRY:
        raise ValueError(f"method {record.name!r} is a variant of {record.variant_of!r}, which is not registered")
    _REGISTRY[record.name] = record
    return record


def unregister(name: str) -> None:
    """Remove a method registered with :func:`register` (tests; variants of it go with it)."""
    get_method(name)
    for other in [n for n, r in _REGISTRY.items() if r.variant_of == name]:
        del _REGISTRY[other]
    del _REGISTRY[name]


def variant(of: str, name: str, summary: str, **overrides) -> Method:
    """A :class:`Method` that runs method ``of`` with ``overrides`` (an ablation)."""
    return dataclasses.replace(get_method(of), name=name, summary=summary, variant_of=of, overrides=overrides)


def get_method(name: str) -> Method:
    """The record of ``name``; ValueError listing the registered ones for any other."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; expected one of {list(_REGISTRY)}") from None


def method_names(*, ablations: bool = False, trains: bool | None = None) -> tuple[str, ...]:
    """Registered names: the methods (``ablations=True``: and their variants, after them; only
    trained ones with ``trains=True``, only one-pass ones with ``trains=False``)."""
    def keep(r: Method) -> bool:
        return trains is None or r.trains == trains

    main = [n for n, r in _REGISTRY.items() if r.variant_of is None and keep(r)]
    extra = [n for n, r in _REGISTRY.items() if r.variant_of is not None and keep(r)] if ablations else []
    return tuple(main + extra)


def ablation_names() -> tuple[str, ...]:
    """The registered ablation variants."""
    return tuple(n for n, r in _REGISTRY.items() if r.variant_of is not None)


def resolve(name: str) -> tuple[str, dict]:
    """``(method, overrides)`` of a method or variant name.

    Examples
    --------
    >>> resolve("paper-hard-fake")
    ('paper', {'hard_fake': True})
    """
    record = get_method(name)
    return (record.variant_of or record.name), dict(record.overrides)


# --------------------------------------------------------------------------- one-pass methods


def _adabn(model, source_image, target_image, target_eval, *, settings, normalizer, device,
           progress) -> OnePassResult:
    """AdaBN: the source model with batch-norm statistics re-estimated on the target (:mod:`.adabn`),
    standardised with the target's one normaliser."""
    adapted = adapt_batchnorm(model, target_image, normalizer=normalizer, device=device, progress=progress)
    return OnePassResult(adapted, target_image, target_eval)


MATCHED_FILE = "target_matched.tif"


def _histmatch(model, source_image, target_image, target_eval, *, settings, normalizer, device,
               progress) -> OnePassResult:
    """The source model unchanged, each target volume remapped to the source's histogram.

    A labelled volume that is a part of a larger one (every n-th slice, :meth:`Volume.take`) is
    matched as that whole volume, then taken again (:meth:`Volume.remapped`), so its scores do
    not depend on which slices are scored; one that is the target image itself is matched once.
    """
    matched = match_to_source(target_image, source_image)

    def match(image: np.ndarray) -> np.ndarray:
        return matched if image is target_image else match_to_source(image, source_image)

    eval_volume = None if target_eval is None else target_eval.remapped(match, f"{target_eval.name}-histmatched")
    return OnePassResult(model, matched, eval_volume, {MATCHED_FILE: matched})


# --------------------------------------------------------------------------- the methods

register(Method(
    "paper", "the paper's Experiment 3: truth maps real, target softmax fake, adversarial loss only",
    ADVERSARIAL | TRUTH_AS_REAL, {"source_weight": 0.0, "adv_weight": 1.0}, step=paper_step,
    discriminator="maps", truth_is_real=True, source_image=lambda settings: (settings.get("source_weight") or 0) > 0))
register(Method(
    "conditional-paper", "its future work as written: (image, label map) discriminator, adversarial loss only, "
    "raw image channel", ADVERSARIAL | TRUTH_AS_REAL | {"condition_image", "mismatch_gap"},
    {"source_weight": 0.0, "adv_weight": 1.0, "condition_image": "raw"}, step=conditional_step,
    discriminator="pairs", truth_is_real=True))
register(Method(
    "conditional", "the same discriminator plus the source loss and rank-normalised images",
    ADVERSARIAL | TRUTH_AS_REAL | {"condition_image", "mismatch_gap"},
    {"source_weight": 1.0, "adv_weight": 0.01, "condition_image": "rank"}, step=conditional_step,
    discriminator="pairs", truth_is_real=True))
register(Method(
    "adaptsegnet", "output-space adaptation: source softmax real, target softmax fake, source loss kept",
    ADVERSARIAL | {"entropy_weight"}, {"source_weight": 1.0, "adv_weight": 0.01}, step=adaptsegnet_step,
    discriminator="maps"))
register(Method(
    "advent", "ADVENT: self-information maps judged, source loss kept",
    ADVERSARIAL | {"entropy_weight"}, {"source_weight": 1.0, "adv_weight": 0.01}, step=advent_step,
    discriminator="self-info"))
register(Method(
    "selftrain", "mean-teacher self-training: confident pseudo-labels on jittered target patches",
    TRAINING | {"pseudo_threshold", "pseudo_weight", "ema_decay"}, {"source_weight": 1.0}, step=selftrain_step,
    teacher=True))
register(Method(
    "adabn", "batch-norm statistics re-estimated on the target, no training", ONE_PASS, one_pass=_adabn,
    source_image=False, deterministic=True))
register(Method(
    "histmatch", "target histogram matched to the source's, model unchanged, no training", ONE_PASS,
    one_pass=_histmatch, outputs=(MATCHED_FILE,), deterministic=True))
register(variant("conditional", "conditional-raw",
                 "conditional without rank-normalised images (the domain shortcut left open)", condition_image="raw"))
register(variant("paper", "paper-soft-real", "paper with label-smoothed real maps (eps 0.1, fixed)",
                 real_smoothing=0.1))
register(variant("paper", "paper-hard-fake", "paper with straight-through hard target predictions",
                 hard_fake=True))
