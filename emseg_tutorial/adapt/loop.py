"""Unsupervised adaptation of the boundary U-Net to the target (Experiment 3 and beyond).

The same loop adapts any two-class model, one class against the rest
(:data:`~emseg_tutorial.labels.ONE_VS_REST`: the paper's boundary, or mitochondria for the
field's VNC -> Lucchi++ benchmark, :mod:`emseg_tutorial.paper.mito_benchmark`): the config's
``task`` says which, and the label maps, the reports and the weight maps follow it. Where the
reports and the rule below say "boundary", read the task's class (code 1).

The paper's method (``method="paper"``), step by step, as its Section 4.3 and Fig. 4 describe:

* a discriminator ``D`` sees **source ground-truth label maps** (one-hot) as *real* (loss L2)
  and the U-Net's **softmax predictions on target patches** as *fake* (loss L3);
* the U-Net ``G`` (initialised from M3) is then updated **only** to make ``D`` call its target
  predictions real; the supervised source loss L1 is dropped;
* the two updates alternate, ``d_steps`` discriminator steps per generator step.

Choices the paper leaves open, and ours: binary cross-entropy on logits for both players (the
original GAN loss, as in AdaptSegNet); Adam with ``lr_d = 1e-4`` (the paper's only stated rate)
and a ten times smaller ``lr_g = 1e-5`` for the pre-trained U-Net; adversarial weight 1 (there is
no other loss to balance); one discriminator step per generator step; a PatchGAN discriminator
without normalisation (:class:`~emseg_tutorial.models.PatchDiscriminator`); the U-Net in
training mode on target batches, so its batch-norm statistics drift to the target as PyTorch
does by default (chapter 6 separates this effect with AdaBN).

The generator loss is the non-saturating form, binary cross-entropy of ``D(fake)`` against
"real" (``-log D``), the usual stand-in for the paper's "maximise L3" (whose literal form,
``log(1 - D)``, gives a vanishing gradient while the discriminator wins).

The other methods (``conditional-paper``, ``conditional``, ``adaptsegnet``, ``advent``,
``selftrain``) run in the same loop with their own step (:mod:`.steps`); their records
(:mod:`.registry`) give their defaults: ``conditional-paper`` is the paper's future work as written
(adversarial loss only, weight 1, raw image channel), the others keep the source loss (weight 1)
with an adversarial weight of 0.01, and ``conditional`` also rank-normalises the image channel. AdaBN and histogram matching need
no training loop (:mod:`.adabn`, :mod:`~emseg_tutorial.data.histmatch`).

After every epoch the trainer records label-free diagnostics (discriminator accuracy on real and
fake, predicted boundary fraction on the target against the source's, mean prediction entropy
on the target, source validation Jaccard, and the hard-vs-soft probe of
:func:`~.steps.shortcut_probe`: ``d_acc_target_hard`` beside ``d_acc_target_soft``) and, when a labelled target volume is given for
evaluation, its scores. Those labels only score the model; no update reads them.

Examples
--------
>>> import numpy as np
>>> from emseg_tutorial.models import UNet2d
>>> from emseg_tutorial.data.synthetic import make_volume
>>> src, tgt = make_volume("fibsem", (3, 48, 48)), make_volume("snemi", (3, 48, 48))
>>> cfg = AdaptConfig(epochs=1, steps_per_epoch=2, batch_size=2, patch=32, report_stride=1,
...                   discriminator={"width": 4, "depth": 2})
>>> res = adapt(UNet2d(out_channels=2, depth=2, base_width=4), src.labels, tgt.image, cfg, progress=False)
>>> [e["epoch"] for e in res.history["epochs"]]
[0, 1]
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .._validate import InputError, check_image
from ..data.augment import Jitter
from ..data.normalize import Normalizer, normalizer_of
from ..data.patches import PatchSampler
from ..data.volume import Volume
from ..devices import adam, check_precision, memory_format, pick_device, precision, set_seed
from ..labels import ONE_VS_REST, check_labels, check_task_labels, class_names, for_task, num_classes
from ..losses import Diverged, first_non_finite, non_finite_weights
from ..models import PatchDiscriminator, build, check_model
from ..progress import progress as progress_bar
from ..train.supervised import DegenerateDataWarning
from ..weight_schemes import weight_map_of_codes
from .diagnostics import (add_epoch, boundary_snapshot, epoch_report, label_free_choice, new_history, reference_of,
                          source_boundary_prior, source_reference)
from .state import adaptation_inputs, check_resumption, restore, save_adaptation_state
from .registry import Method, get_method, method_names
from .steps import StepContext, shortcut_probe


#: Which weights an adaptation run returns (:attr:`AdaptConfig.keep`).
KEEP = ("last", "label-free")
#: Options a method reads that may stay None.
OPTIONAL = ("device", "patience")


@dataclass(kw_only=True)
class AdaptConfig:
    """Settings of one adaptation run (stored with the adapted model).

    The sizes (``epochs``, ``steps_per_epoch``, ``batch_size``, ``patch``, ``report_stride``,
    ``discriminator``) have no default: they come from a preset, through
    :func:`emseg_tutorial.paper.stages.adapt_config` (chapter 6 adds its
    :class:`~emseg_tutorial.presets.ComparisonSize`), so a size is written in one place only
    (:mod:`emseg_tutorial.presets`). The fields with a default are the adversarial training's
    own choices, the same at every preset (the learning rates of the module docstring, the
    methods' weights, the seed, the best device, ``auto`` precision).

    Attributes
    ----------
    task : str
        The two-class task of the model (:data:`~emseg_tutorial.labels.ONE_VS_REST`): the
        paper's ``"boundary"`` (default), or one class against the rest (``"mitochondria"``).
        The source labels become its codes and the target is scored in them.
    method : str
        A trained method's name (:func:`~.registry.method_names` with ``trains=True``; see
        :mod:`.steps`). Settings left ``None`` are taken from its record's defaults
        (:attr:`~.registry.Method.defaults`); one it reads must then be set.
    epochs, steps_per_epoch : int
        The paper shows the target after each of 4 epochs.
    batch_size, patch : int
        Target patches (and source patches) per step and their side.
    lr_g, lr_d : float
        Adam learning rates of the U-Net (1e-5) and the discriminator (1e-4, the paper's).
    adv_weight : float, optional
        Weight of the adversarial loss in the U-Net's update (default by method: 1 for
        ``paper``, 0.01 where the source loss is kept; None where no discriminator).
    source_weight : float, optional
        Weight of the supervised source cross-entropy (default by method: 0 for ``paper``,
        which drops it, else 1).
    source_weights : str
        Weight-map scheme of that cross-entropy (``"distance"``, as M2 and M3 were trained).
    entropy_weight : float
        ``advent``/``adaptsegnet``: weight of direct entropy minimisation on the target (0: off).
    condition_image : {"rank", "raw"}, optional
        ``conditional``/``conditional-paper``: how the discriminator sees the image (see
        :mod:`.steps`; default by method: ``"rank"`` for ``conditional``, ``"raw"`` for
        ``conditional-paper``; None for methods that do not read it).
    real_smoothing : float
        ``paper``/conditional methods: label smoothing ``eps`` of the discriminator's real (and
        wrong-slice) maps, ``one_hot * (1 - eps) + eps / C`` (0: one-hot, as the paper). Removes
        part of the hard-vs-soft cue (:mod:`.steps`).
    hard_fake : bool
        ``paper``/conditional methods: the discriminator sees straight-through hard target
        predictions, ``one_hot(argmax p) + p - p.detach()``, instead of the softmax.
    mismatch_gap : int
        conditional methods: the wrong label map comes from a slice at least this far away (capped at
        half the source depth).
    pseudo_threshold, pseudo_weight, ema_decay : float
        ``selftrain``: teacher confidence needed for a pseudo-label, weight of the pseudo-label
        loss, and the mean teacher's decay.
    d_steps : int
        Discriminator updates per U-Net update.
    report_stride : int
        Label-free diagnostics after each epoch use every ``report_stride``-th slice of the
        target and source validation volumes (1: all; larger is faster).
    seed : int
    discriminator : dict
        :class:`~emseg_tutorial.models.PatchDiscriminator` keyword arguments (``in_channels``
        is set from the method).
    device : str, optional
    precision : {"auto", "float32", "bfloat16", "float16"}
        Autocast dtype of both networks (:func:`~emseg_tutorial.devices.precision`).
    keep : {"last", "label-free"}
        Which weights the run returns: the last epoch's, or those of the epoch the label-free
        rule chooses (:func:`~.diagnostics.label_free_choice`; epoch 0, the model before
        adaptation, when every adapted epoch raised a disqualifying warning). Target labels
        play no part in either.
    patience : int, optional
        With ``keep="label-free"``: stop once this many epochs have passed without a new
        label-free choice (None: run every epoch).
    """

    method: str = "paper"
    task: str = "boundary"
    epochs: int
    steps_per_epoch: int
    batch_size: int
    patch: int
    lr_g: float = 1e-5
    lr_d: float = 1e-4
    adv_weight: float | None = None
    source_weight: float | None = None
    source_weights: str = "distance"
    entropy_weight: float = 0.0
    condition_image: str | None = None
    real_smoothing: float = 0.0
    hard_fake: bool = False
    mismatch_gap: int = 8
    pseudo_threshold: float = 0.9
    pseudo_weight: float = 1.0
    ema_decay: float = 0.99
    d_steps: int = 1
    report_stride: int
    seed: int = 0
    discriminator: dict
    device: str | None = None
    precision: str = "auto"
    keep: str = "last"
    patience: int | None = None

    def __post_init__(self):
        check_precision(self.precision)
        if self.task not in ONE_VS_REST:
            raise ValueError(f"task must be a two-class task, one of {ONE_VS_REST}, got {self.task!r}")
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}, got {self.keep!r}")
        if self.patience is not None and (self.patience < 1 or self.keep != "label-free"):
            raise ValueError(f"patience must be an integer >= 1 and needs keep='label-free' (the rule that stops "
                             f"the run), got patience={self.patience!r} with keep={self.keep!r}")
        trained = method_names(trains=True)
        if self.method not in trained:
            raise ValueError(f"method must be one of {trained}, got {self.method!r}")
        record = get_method(self.method)
        for key, value in record.defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        unset = sorted(k for k in record.options if k not in OPTIONAL and getattr(self, k) is None)
        if unset:
            raise ValueError(f"method {self.method!r} reads {', '.join(unset)}: give a value (it has no default)")
        for name in ("epochs", "steps_per_epoch", "batch_size", "d_steps", "mismatch_gap", "report_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d", "source_weight", "entropy_weight", "pseudo_weight"):  # NaN, infinity refused
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.adv_weight is not None and not (math.isfinite(self.adv_weight) and self.adv_weight > 0):
            raise ValueError(f"adv_weight must be a finite number > 0, got {self.adv_weight!r}")
        if self.condition_image not in (None, "rank", "raw"):
            raise ValueError(f"condition_image must be 'rank' or 'raw', got {self.condition_image!r}")
        if not 0 <= self.real_smoothing < 1:
            raise ValueError(f"real_smoothing must be in [0, 1), got {self.real_smoothing}")
        if (self.real_smoothing > 0 or self.hard_fake) and not record.truth_is_real:
            truth = [n for n in trained if get_method(n).truth_is_real]
            raise ValueError(f"real_smoothing and hard_fake apply to discriminators with truth maps as real "
                             f"({', '.join(truth)}), not to {self.method!r}")
        if not 0 <= self.pseudo_threshold <= 1 or not 0 <= self.ema_decay <= 1:
            raise ValueError("pseudo_threshold and ema_decay must be in [0, 1], got "
                             f"{self.pseudo_threshold} and {self.ema_decay}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdaptResult:
    """The adapted U-Net, its discriminator (None for ``selftrain``), the history and per-epoch
    target snapshots."""

    model: torch.nn.Module
    discriminator: torch.nn.Module | None
    config: AdaptConfig
    history: dict
    snapshots: list[np.ndarray]


#: smallest slice side adaptation works on (patches, batch-norm statistics; the book's synth minimum)
MIN_SLICE = 16


def check_slice_size(volume: np.ndarray, name: str, config: AdaptConfig | None = None) -> None:
    """Raise InputError unless ``volume``'s slices are large enough to adapt with ``config``.

    Each side must be at least :data:`MIN_SLICE` pixels and, for the methods with a
    discriminator, ``2 ** depth`` (each of its stride-2 layers halves the patch; a smaller one
    has nothing left to judge).

    Examples
    --------
    >>> cfg = AdaptConfig(epochs=1, steps_per_epoch=1, batch_size=1, patch=16, report_stride=1,
    ...                   discriminator={"width": 4, "depth": 4})
    >>> check_slice_size(np.zeros((1, 1, 1)), "tiny.tif", cfg)
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: tiny.tif: slices of 1 x 1 pixels are too small to adapt to; method 'paper' needs at least 16 x 16 (the discriminator's 4 stride-2 layers)
    """
    need, why = MIN_SLICE, "the smallest patch"
    if config is not None and get_method(config.method).discriminator != "none":
        depth = int(config.discriminator.get("depth", 4))
        if 2 ** depth >= need:
            need, why = 2 ** depth, f"the discriminator's {depth} stride-2 layers"
    y, x = volume.shape[-2:]
    if min(y, x) < need:
        method = f"method {config.method!r}" if config is not None else "adaptation"
        raise InputError(f"{name}: slices of {y} x {x} pixels are too small to adapt to; {method} needs at least "
                         f"{need} x {need} ({why})")


def adapt(model: torch.nn.Module, source_labels: np.ndarray, target_image: np.ndarray, config: AdaptConfig, *,
          source_image: np.ndarray | None = None, source_val: Volume | None = None,
          target_eval: Volume | None = None, snapshot_slice: int | None = None,
          initial_report: dict | None = None, progress: bool = True, target_name: str = "target image",
          checkpoint: str | os.PathLike | None = None, resume: dict | None = None,
          target_normalizer: Normalizer | None = None) -> AdaptResult:
    """Adapt a boundary U-Net (M3) to an unlabelled target volume.

    Parameters
    ----------
    model : torch.nn.Module
        The source-trained boundary model; a copy is adapted.
    source_labels : ndarray, (Z, Y, X)
        Source ground truth (4-class or boundary codes): the discriminator's "real" maps.
        Checked here, once (:func:`source_codes`); everything below takes the checked codes.
    target_image : ndarray, (Z, Y, X)
        Unlabelled target volume the U-Net adapts to.
    config : AdaptConfig
    source_image : ndarray, optional
        Source images, where the method's record says it needs them
        (:meth:`~.registry.Method.needs_source_image`: every built-in trained method but
        ``paper`` without a source loss); ValueError naming the method otherwise.
    source_val : Volume, optional
        Labelled source volume for the source-drift diagnostic.
    target_eval : Volume, optional
        Labelled target volume, used **only** to score each epoch.
    snapshot_slice : int, optional
        Slice of ``target_eval`` (else of ``target_image``) predicted after each epoch (Fig. 6).
    initial_report : dict, optional
        :func:`epoch_report` of ``model`` on the same volumes, when the caller already has it
        (a comparison of many runs from one model computes it once).
    progress : bool
    target_name : str
        How messages name the target (its file, say).
    checkpoint : path, optional
        Where to write the run's resumable state after every epoch (:mod:`.state`).
    resume : dict, optional
        A state from :func:`.state.load_adaptation_state` of a run with the same settings
        (``epochs`` and ``device`` aside) and the same ``model``, ``source_labels``,
        ``target_image`` and (where the method reads it) ``source_image``: the run continues with
        the epoch after it. Other data is refused before any work, naming the argument
        (:func:`.state.check_resumption`; their fingerprints are saved with the state).
    target_normalizer : Normalizer, optional
        The target volume's one normaliser when the caller has it (a :class:`Volume`'s), else
        computed here once; the target patches and every report share it.

    Raises
    ------
    InputError
        Not a two-class model of ``config.task`` (:func:`check_boundary_model`), bad volumes, or
        slices too small to adapt with (:func:`check_slice_size`), before any training.
    Diverged
        A loss or a weight became NaN or infinite (:func:`check_diverged`, after each epoch):
        one line naming the epoch, the step and the settings to lower.
    """
    record = get_method(config.method)
    check_boundary_model(model, task=config.task)
    target_image = check_image(target_image, target_name)
    check_slice_size(target_image, target_name, config)
    labels = source_codes(source_labels, config)  # the one check of the source labels on this path
    warn_degenerate(target_image, target_name)
    record.check_source_image(config, source_image)
    read_source = source_image if record.needs_source_image(config) else None
    inputs = (adaptation_inputs(model, source_labels, target_image, read_source)
              if checkpoint is not None or resume is not None else None)
    if resume is not None:  # the same settings and data as the saved run, before any work
        inputs = check_resumption(resume, config, inputs)
    n_classes = num_classes(config.task)
    set_seed(config.seed)
    device = pick_device(config.device)
    target_norm = normalizer_of(target_image, target_normalizer)  # the target's one normaliser: patches, reports
    ctx = step_context(model, labels, target_image, config, source_image, device, n_classes, record,
                       target_normalizer=target_norm)
    # what the target's boundary fraction is compared with: the unadapted model's, taken once
    source_prior = (reference_of(initial_report) if initial_report is not None else
                    source_reference(model, source_boundary_prior(labels), device, source_val, config.report_stride))

    snap_volume, snap_norm = ((target_eval.image, target_eval.normalizer) if target_eval is not None
                              else (target_image, target_norm))
    z_snap = snap_volume.shape[0] // 2 if snapshot_slice is None else snapshot_slice
    report = lambda: epoch_report(ctx.model, target_image, source_prior, device, source_val,  # noqa: E731
                                  target_eval, config.report_stride, normalizer=target_norm, task=config.task)
    done, step = 0, 0
    kept = {"epoch": 0, "state": _weights(ctx.model)} if config.keep == "label-free" else None
    if resume is not None:
        done, step, history, snapshots = restore(ctx, resume)
        kept = resume.get("kept") or kept
    else:
        snapshots = [boundary_snapshot(ctx.model, snap_volume, z_snap, device, normalizer=snap_norm)]
        history = new_history(config.to_dict(), initial_report if initial_report is not None else report(), z_snap)
    start = time.perf_counter() - history.get("seconds", 0.0)
    step_fn = record.step
    stopped = history.get("stop", {}).get("reason") == "patience"  # a resumed run that had stopped
    for epoch in range(done + 1, 0 if stopped else config.epochs + 1):
        bar = progress_bar(range(config.steps_per_epoch), enabled=progress,
                           desc=f"adapt ({config.method}) epoch {epoch}/{config.epochs}")
        pending: dict[str, list[torch.Tensor]] = {}  # step statistics stay on the device until the epoch ends
        for _ in bar:
            step += 1
            history["train"]["step"].append(step)
            for key, value in step_fn(ctx).items():
                pending.setdefault(key, []).append(value)
        read = {key: torch.stack(values).float().tolist() for key, values in pending.items()}
        check_diverged(ctx, epoch, read)  # before any report: they would blame the model's checkpoint
        for key, values in read.items():
            history["train"].setdefault(key, []).extend(values)
        probe = shortcut_probe(ctx)  # no training, no effect on the run (see its docstring)
        row = report()
        row.update(zip(probe, torch.stack(list(probe.values())).tolist()) if probe else {})
        recent = slice(-config.steps_per_epoch, None)
        for key, values in history["train"].items():
            if key.startswith("acc_") or key.startswith("pseudo_"):
                row[key if key.startswith("pseudo_") else f"d_{key}"] = float(np.mean(values[recent]))
        if row.get("d_acc_real") is not None:
            bar.set_postfix(d_real=f"{row['d_acc_real']:.2f}", d_fake=f"{row['d_acc_fake']:.2f}")
        add_epoch(history, row)
        snapshots.append(boundary_snapshot(ctx.model, snap_volume, z_snap, device, normalizer=snap_norm))
        if kept is not None and label_free_choice(history["epochs"]) == epoch:  # never reads target scores
            kept = {"epoch": epoch, "state": _weights(ctx.model)}
        reason = _stop_reason(config, epoch, kept)
        if reason is not None:
            history["stop"] = {"reason": reason, "epoch": epoch, "keep": config.keep,
                               "kept_epoch": epoch if kept is None else kept["epoch"]}
        history["seconds"] = time.perf_counter() - start
        if checkpoint is not None:
            save_adaptation_state(checkpoint, ctx, epoch=epoch, step=step, history=history, snapshots=snapshots,
                                  inputs=inputs, kept=kept)
        if reason == "patience":
            break
    if kept is not None:  # the label-free choice's weights (the discriminator stays the last epoch's)
        ctx.model.load_state_dict(kept["state"])
    history["seconds"] = time.perf_counter() - start
    def to_cpu(net: torch.nn.Module) -> torch.nn.Module:  # in the default layout (CUDA trains channels-last)
        return net.cpu().to(memory_format=torch.contiguous_format)

    disc = to_cpu(ctx.disc) if ctx.disc is not None else None
    return AdaptResult(model=to_cpu(ctx.model), discriminator=disc, config=config, history=history,
                       snapshots=snapshots)


def _weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``net``'s weights on the CPU (what a kept epoch holds)."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def _stop_reason(config: AdaptConfig, epoch: int, kept: dict | None) -> str | None:
    """``"patience"`` when ``config.patience`` epochs passed without a new label-free choice,
    ``"epochs"`` at the last epoch, else None."""
    if kept is not None and config.patience is not None and epoch - kept["epoch"] >= config.patience:
        return "patience"
    return "epochs" if epoch == config.epochs else None


def warn_degenerate(target_image: np.ndarray, target_name: str = "target image") -> None:
    """Warn (:class:`~emseg_tutorial.train.supervised.DegenerateDataWarning`) when there is nothing
    to adapt to: a constant target image (one-class source labels are warned of where the labels
    are checked, :func:`source_codes`).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_degenerate(np.zeros((1, 16, 16)), "tgt.tif")
    >>> [str(w.message).split(";")[0] for w in caught]
    ['tgt.tif: every voxel is 0 (a constant image)']
    """
    lo, hi = target_image.min(), target_image.max()
    if lo == hi:
        warnings.warn(f"{target_name}: every voxel is {lo:g} (a constant image); there is nothing to adapt to",
                      DegenerateDataWarning, stacklevel=3)


#: the settings a diverged adaptation names, where the method reads them (lr_d: only when the
#: discriminator's own loss went first)
DIVERGENCE_SETTINGS = ("lr_g", "adv_weight", "source_weight", "entropy_weight", "pseudo_weight")


def check_diverged(ctx: StepContext, epoch: int, stats: dict[str, list[float]]) -> None:
    """Raise :class:`~emseg_tutorial.losses.Diverged` when the adaptation has stopped being finite.

    ``stats`` are the step statistics of epoch ``epoch`` (one value per step), just read from
    the device. The first NaN or infinite loss (``loss_*``), or a NaN or infinite weight of the
    U-Net or the discriminator, ends the run with the epoch and the step, what was not finite,
    and the method's settings to lower (its learning rate and loss weights). The adaptation is
    to blame, not the model it started from (which was checked finite before the first step).
    With gradient scalers (float16 on CUDA) a step whose loss overflowed is skipped by the
    scaler itself; only non-finite weights, or every loss of the epoch, count.

    Examples
    --------
    >>> cfg = AdaptConfig(epochs=1, steps_per_epoch=2, batch_size=1, patch=16, report_stride=1,
    ...                   discriminator={"width": 4, "depth": 2}, lr_g=1e30)
    >>> from types import SimpleNamespace
    >>> ctx = SimpleNamespace(config=cfg, model=torch.nn.Linear(1, 1), disc=None, scaler_g=None)
    >>> check_diverged(ctx, 1, {"loss_d": [0.7, 0.6], "loss_g": [0.7, float("nan")], "acc_real": [0.5, 0.5]})
    Traceback (most recent call last):
    ...
    emseg_tutorial.losses.Diverged: adaptation diverged at epoch 1, step 2 (loss_g is nan): lower lr_g (now 1e+30) or adv_weight (now 1)
    """
    config = ctx.config
    losses = {k: v for k, v in stats.items() if k.startswith("loss")}
    read = get_method(config.method).options
    values = {k: getattr(config, k) for k in DIVERGENCE_SETTINGS if k in read and getattr(config, k) is not None}
    settings = {k: v for k, v in values.items() if k in ("lr_g", "adv_weight") or v > 0}  # a weight 0 is no cause
    bad = first_non_finite(losses)
    every = all(not math.isfinite(v) for series in losses.values() for v in series)
    if bad is not None and (ctx.scaler_g is None or every):
        step, key, value = bad
        if key == "loss_d" and non_finite_weights(ctx.model) is None:  # the discriminator went on its own
            settings = {"lr_d": config.lr_d, **settings}
        raise Diverged("adaptation", f"epoch {epoch}, step {step + 1}", f"{key} is {value}", settings)
    which = non_finite_weights(ctx.model, ctx.disc)
    if which is not None:
        net = "the U-Net's" if which == 0 else "the discriminator's"
        raise Diverged("adaptation", f"epoch {epoch}", f"{net} weights hold NaN or infinite values", settings)


def check_boundary_model(model: torch.nn.Module, name: str | None = None,
                         task: str | None = None) -> torch.nn.Module:
    """``model`` if it is a two-class segmentation U-Net (the boundary, or one class against the
    rest) trained for ``task`` (when given and the model records its task, ``model.task``: a
    model restored from a checkpoint or returned by training), else one-line InputError.

    Adaptation adapts M3, the boundary model, or another one-vs-rest model (mitochondria);
    messages name ``name`` or the model's checkpoint file
    (:func:`~emseg_tutorial.models.check_model` checks the rest).

    Examples
    --------
    >>> from emseg_tutorial.models import UNet2d
    >>> check_boundary_model(UNet2d(out_channels=4, depth=1, base_width=4), "m1.pt")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: m1.pt: adaptation needs a two-class model (2 classes: the boundary, or one class against the rest), this one has 4
    >>> mito = UNet2d(out_channels=2, depth=1, base_width=4)
    >>> mito.task = "mitochondria"
    >>> check_boundary_model(mito, "mito.pt", task="boundary")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: mito.pt: the model was trained for the mitochondria task, not boundary (the adaptation's task); adapt it with task='mitochondria'
    """
    check_model(model, name, classes=None)
    name = name or getattr(model, "checkpoint", None) or "model"
    classes = getattr(model, "init_kwargs", {}).get("out_channels")
    if classes != num_classes("boundary"):
        raise InputError(f"{name}: adaptation needs a two-class model ({num_classes('boundary')} classes: the "
                         f"boundary, or one class against the rest), this one has {classes}")
    recorded = getattr(model, "task", None)
    if task is not None and recorded is not None and recorded != task:
        raise InputError(f"{name}: the model was trained for the {recorded} task, not {task} (the adaptation's "
                         f"task); adapt it with task={recorded!r}")
    return model


def source_codes(labels: np.ndarray, config: AdaptConfig | None = None, name: str = "source labels", *,
                 task: str | None = None) -> np.ndarray:
    """Source labels checked (:func:`~emseg_tutorial.labels.check_labels`; a foreground task's
    class must be in them, :func:`~emseg_tutorial.labels.check_task_labels`; with ``config``,
    also their slice size, :func:`check_slice_size`; labels of one class only give a
    :class:`~emseg_tutorial.train.supervised.DegenerateDataWarning`) and in the codes of the
    task (``task``, else ``config.task``, else boundary): done once where they enter
    (:func:`adapt`, :func:`~.methods.run_method`); every function below takes the result as it is.

    Examples
    --------
    >>> source_codes(np.array([[0, 1], [3, 4]])).tolist()
    [[[0, 1], [2, 2]]]
    >>> source_codes(np.array([[0, 1], [3, 4]]), task="mitochondria").tolist()
    [[[0, 2], [1, 2]]]
    """
    task = task or (config.task if config is not None else "boundary")
    codes = for_task(check_task_labels(check_labels(labels, name), task, name), task)
    if config is not None:
        check_slice_size(codes, name, config)
    present = [code for code in (1, 2) if (codes == code).any()]
    if len(present) == 1:
        kind = class_names(task)[present[0]]
        warnings.warn(f"{name}: every labelled pixel is {kind} (code {present[0]}); the source maps hold one "
                      f"class, so the adaptation has no shapes to match", DegenerateDataWarning, stacklevel=3)
    return codes


def step_context(model, labels, target_image, config: AdaptConfig, source_image, device, n_classes,
                 record: Method | None = None, *, target_normalizer: Normalizer | None = None) -> StepContext:
    """Samplers, networks and optimisers of one run (``labels``: :func:`source_codes`).

    Where the method's record needs no source image (the paper's, which reads label maps only),
    the source sampler draws label maps and nothing is done with ``source_image``.
    ``target_normalizer``: the target volume's one normaliser (default: computed from
    ``target_image``), shared with the epoch reports.

    The discriminator, its input and the mean teacher come from the method's record
    (:mod:`.registry`).

    Patches are drawn on the device itself (:class:`~emseg_tutorial.data.patches.PatchSampler`),
    and the self-training jitter draws from its own ``torch.Generator`` there.
    """
    record = record or get_method(config.method)
    gap = min(config.mismatch_gap, labels.shape[0] // 2) if record.discriminator == "pairs" else None
    if gap is not None and gap < 1:
        raise ValueError(f"the conditional discriminator needs at least 2 source slices, got {labels.shape[0]}")
    # Source patches are not jittered here: the conditional discriminator would otherwise see
    # blur and noise on source images only, one more way to tell the domains apart.
    weights = weight_map_of_codes(labels, config.source_weights, config.task) if config.source_weight else None
    image = source_image if record.needs_source_image(config) else None  # label maps only otherwise
    source = PatchSampler(image, labels, weights, device=device, patch=config.patch, seed=config.seed,
                          mismatch_gap=gap)
    target = PatchSampler(target_image, None, device=device, patch=config.patch, seed=config.seed + 1,
                          normalizer=target_normalizer)
    rng = torch.Generator(device=device).manual_seed(config.seed + 2)
    layout = memory_format(device)
    model = copy.deepcopy(model).to(device, memory_format=layout)
    if getattr(model, "checkpoint", None):  # the copy is no longer that file: messages must not blame it
        model.checkpoint = f"the model adapted from {model.checkpoint}"
    disc = None
    in_channels = record.discriminator_channels(n_classes)
    if in_channels is not None:
        disc = build(PatchDiscriminator.arch, {**config.discriminator, "in_channels": in_channels},  # sizes checked
                     "config.discriminator").to(device, memory_format=layout)
    amp = precision(device, config.precision)
    return StepContext(
        model=model, disc=disc, teacher=copy.deepcopy(model) if record.teacher else None,
        opt_g=adam(model.parameters(), config.lr_g, device, betas=(0.9, 0.99)),
        opt_d=adam(disc.parameters(), config.lr_d, device, betas=(0.9, 0.99)) if disc else None,
        scaler_g=amp.grad_scaler() if amp.scales_gradients else None,
        scaler_d=amp.grad_scaler() if amp.scales_gradients and disc else None,
        source=source, target=target, config=config, device=device, amp=amp, n_classes=n_classes,
        jitter=Jitter(), rng=rng, disc_input=record.discriminator)
