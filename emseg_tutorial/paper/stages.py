"""The paper's models as named stages, trained once per build and shared between chapters.

Everything the paper prescribes about *how long* and *with what* to train lives here, not in
the trainers: the iteration budgets it reports (:data:`PAPER_ITERATIONS`), the stages that
use them (:data:`STAGES`), and the two config builders, :func:`train_config` (supervised
runs, also used by ``python -m emseg_tutorial train``) and :func:`adapt_config` (adaptation).
The builders are the one place a config gets its sizes: every size comes from the preset
(:mod:`emseg_tutorial.presets`); the configs have none of their own.

Every function here that trains, loads or sizes for a run takes the :class:`~emseg_tutorial.session.Session`
of :func:`emseg_tutorial.setup` as an argument; none falls back to a global one (a missing or
wrong one is a ``TypeError``).

Each stage is one supervised run of :func:`~emseg_tutorial.train.train_supervised`:

=================  ==========  ==============  =========  =======  ===============================
stage              task        weights (loss)  starts at  jitter   paper
=================  ==========  ==============  =========  =======  ===============================
``m1``             multiclass  entropy         scratch    no       Experiment 1 (M1)
``m1_unweighted``  multiclass  none            scratch    no       baseline
``m2``             boundary    distance        ``m1``     no       Experiment 2 (M2)
``m2_scratch``     boundary    distance        scratch    no       Experiment 2 from scratch
``m2_ratio2``      boundary    ratio:2         ``m1``     no       ratio baseline 2:1
``m2_ratio5``      boundary    ratio:5         ``m1``     no       ratio baseline 5:1
``m2_ratio10``     boundary    ratio:10        ``m1``     no       ratio baseline 10:1
``m2_distance10``  boundary    distance:10     ``m1``     no       Fig. 5c, 10:1 smoothed distance
``m2_unweighted``  boundary    none            ``m1``     no       baseline
``m2_border``      boundary    border          ``m1``     no       U-Net border weights (beyond)
``m2_entropy``     boundary    entropy         ``m1``     no       Experiment 1's map on walls
``m2_dice``        boundary    none (Dice)     ``m1``     no       soft Dice loss (beyond)
``m2_focal``       boundary    none (focal)    ``m1``     no       focal loss, gamma 2 (beyond)
``m3_distance10``  boundary    distance:10     see right  yes      M3 from ``m2_distance10``
``m3``             boundary    distance        ``m2``     yes      jitter fine-tuning (M3)
``m3_unlike``      boundary    distance        ``m2``     unlike   ablation: jitter unlike target
``oracle_m1``      multiclass  entropy         scratch    no       M1 on the *target's* labels
``oracle``         boundary    distance        oracle_m1  no       the oracle: M2 on the target's
``mito_source``    mito...     distance        scratch    no       the field's benchmark: source
``mito_oracle``    mito...     distance        scratch    no       ... and its oracle (target's)
=================  ==========  ==============  =========  =======  ===============================

The ``mito_`` stages (task ``mitochondria``, one class against the rest) are the source model and
the oracle of the field's VNC -> Lucchi++ benchmark (:mod:`.mito_benchmark`), the same recipe for
both (Experiment 2's distance weights on the mitochondria's outline, from scratch); the benchmark
passes their training volumes (VNC and the Lucchi++ train volume in real mode, the twins offline).

The two ``oracle`` stages learn from the target's labelled train split (``domain="snemi"``), never
read by adaptation: they say how far a model trained on the target itself gets
(:mod:`.gap`).

The weightings of Experiment 2 (every stage from ``m1`` to the boundary task, listed in
:data:`WEIGHTING_STAGES`) are also trained with further seeds for chapter 4's seed table
(:func:`~emseg_tutorial.paper.seeds.seed_scores`): ``get_stage(name, seed=s, init_seed=0)``
keeps M1 fixed (seed 0) and varies only the fine-tuning seed, i.e. the new output layer's
initialisation and the stream of training patches (crops, flips, turns).

Runs are saved in the session's ``runs`` folder (``EMSEG_RUNS``, default ``./runs``) as
``<preset>/<stage>-seed<seed>.pt`` (``-init<seed>`` added for a run started from another seed's parent).
A later chapter that needs a stage loads it when its config, the package source
(:func:`~emseg_tutorial._source.source_hash`: edit any module and the stages train again) and
its training volume match, and says so in one line ("reused m1 (seed 0) from
runs/ci/m1-seed0.pt", when the session's ``progress`` is on); it trains it otherwise. A stage
interrupted mid-training (a dropped Colab session) continues from its last saved state (``<stage>-seed<seed>-<key>.state.pt``, every validation interval).
Chapter 5's adaptation (:func:`run_adaptation`) is kept the same way, under
``<preset>/adapt/`` (:mod:`.runs`): continued from its last epoch when interrupted, read back
when finished. Point ``EMSEG_RUNS`` at a persistent folder (Google Drive on Colab) and a new runtime reuses
the earlier chapters' models. ``make book`` and ``make test`` empty that folder first, so every
number in a build comes from models trained in that build.

Examples
--------
>>> STAGES["m2"].init, STAGES["m3"].jitter, STAGES["m3"].budget
('m1', True, 'jitter')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import _source
from ..adapt import AdaptConfig, AdaptResult, adapt, get_method
from ..data.sources import load_domain
from ..data.volume import Volume
from ..presets import Preset
from ..progress import note
from ..session import Session
from ..store import load_checkpoint, load_training_state, save_checkpoint
from ..train import TrainConfig, TrainResult, train_supervised
from .runs import adaptation_fingerprint, digest, fingerprint_key, saved_state, unit_path

#: Training lengths the paper reports, in its "iterations": Experiment 1 (M1), Experiment 2
#: from M1 (M2; the ratio baselines get the same budget), Experiment 2 from scratch, and the
#: jitter fine-tuning (M3). A preset turns them into optimiser steps (:func:`budget_steps`).
PAPER_ITERATIONS: dict[str, int] = {"exp1": 120, "exp2": 20, "exp2_scratch": 90, "jitter": 10}


@dataclass(frozen=True)
class Stage:
    """One named training run of the paper's pipeline; ``budget`` is its :data:`PAPER_ITERATIONS` key."""

    task: str
    weights: str
    init: str | None = None
    jitter: bool | str = False  # True: the default jitter; a str: a name of data.augment.JITTERS
    description: str = ""
    loss: str = "ce"
    domain: str = "fibsem"  # whose labelled train split it learns from: "snemi" for the target oracle

    @property
    def budget(self) -> str:
        return budget_of(self.task, init=self.init is not None, jitter=self.jitter)


def budget_of(task: str, *, init: bool, jitter: bool | str) -> str:
    """Which of the paper's budgets a run has: ``jitter`` for the M2 -> M3 fine-tuning, ``exp1``
    for 4 classes, ``exp2`` for the boundary task from an earlier model, else ``exp2_scratch``."""
    if jitter:
        return "jitter"
    if task == "multiclass":
        return "exp1"
    return "exp2" if init else "exp2_scratch"


def budget_steps(preset: Preset, budget: str) -> int:
    """Optimiser steps of a paper budget at ``preset``: iterations x ``steps_per_iteration``.

    Examples
    --------
    >>> from emseg_tutorial.presets import get_preset
    >>> budget_steps(get_preset("cpu"), "exp1")
    480
    """
    if budget not in PAPER_ITERATIONS:
        raise ValueError(f"unknown budget {budget!r}; expected one of {sorted(PAPER_ITERATIONS)}")
    return max(1, int(round(PAPER_ITERATIONS[budget] * preset.steps_per_iteration)))


STAGES: dict[str, Stage] = {
    "m1": Stage("multiclass", "entropy", description="Experiment 1: 4 classes, 5x5 label-entropy weights"),
    "m1_unweighted": Stage("multiclass", "none", description="4 classes, every pixel weight 1"),
    "m2": Stage("boundary", "distance", "m1", description="Experiment 2: boundary from M1, smoothed distance weights"),
    "m2_scratch": Stage("boundary", "distance", description="Experiment 2 from scratch, smoothed distance weights"),
    "m2_ratio2": Stage("boundary", "ratio:2", "m1", description="boundary from M1, class ratio 2:1"),
    "m2_ratio5": Stage("boundary", "ratio:5", "m1", description="boundary from M1, class ratio 5:1"),
    "m2_ratio10": Stage("boundary", "ratio:10", "m1", description="boundary from M1, class ratio 10:1"),
    "m2_distance10": Stage("boundary", "distance:10", "m1", description="boundary from M1, smoothed distance at 10:1"),
    "m2_unweighted": Stage("boundary", "none", "m1", description="boundary from M1, every pixel weight 1"),
    "m2_border": Stage("boundary", "border", "m1", description="boundary from M1, U-Net border weights"),
    "m2_entropy": Stage("boundary", "entropy", "m1", description="boundary from M1, 5x5 label-entropy weights"),
    "m2_dice": Stage("boundary", "none", "m1", loss="dice", description="boundary from M1, soft Dice loss"),
    "m2_focal": Stage("boundary", "none", "m1", loss="focal", description="boundary from M1, focal loss (gamma 2)"),
    "m3_distance10": Stage("boundary", "distance:10", "m2_distance10", jitter=True,
                           description="M2 with 10:1 smoothed distance weights, fine-tuned with random jitter"),
    "m3": Stage("boundary", "distance", "m2", jitter=True, description="M2 fine-tuned with random jitter"),
    "m3_unlike": Stage("boundary", "distance", "m2", jitter="unlike",
                       description="ablation: M2 fine-tuned with a jitter unlike the target (Jitter.unlike)"),
    # The oracle: the same U-Net and recipe (M1 -> M2) trained on the *target's* own labels
    # (its train split), so every adaptation's gain is read against the gap it could close.
    "oracle_m1": Stage("multiclass", "entropy", domain="snemi",
                       description="oracle: Experiment 1 on the target's own labels"),
    "oracle": Stage("boundary", "distance", "oracle_m1", domain="snemi",
                    description="oracle: Experiment 2 on the target's own labels (what adaptation could reach)"),
    # The field's mitochondria benchmark (paper.mito_benchmark): one recipe for the source model and its oracle.
    "mito_source": Stage("mitochondria", "distance",
                         description="mitochondria vs the rest on the source, outline distance weights, from scratch"),
    "mito_oracle": Stage("mitochondria", "distance", domain="snemi",
                         description="oracle: mitochondria vs the rest on the target's own labels"),
}


#: Experiment 2's weightings under one budget (boundary task, from M1), in table order: the
#: paper's map, its 10:1 reading, the paper's ratio baselines, and the baselines beyond it.
WEIGHTING_STAGES: tuple[str, ...] = ("m2", "m2_distance10", "m2_ratio2", "m2_ratio5", "m2_ratio10", "m2_entropy",
                                     "m2_border", "m2_dice", "m2_focal", "m2_unweighted")


def train_config(preset: Preset, *, task: str, weights: str, init: bool = False, jitter: bool | str = False,
                 steps: int | None = None, seed: int = 0, device: str | None = None,
                 **overrides) -> TrainConfig:
    """A :class:`~emseg_tutorial.train.TrainConfig` sized by ``preset`` for one of the paper's stages.

    ``steps`` defaults to the run's paper budget (:func:`budget_of`, :func:`budget_steps`);
    ``batch_size``, ``patch``, ``lr``, ``val_every`` and ``model`` are the preset's. Any other
    :class:`~emseg_tutorial.train.TrainConfig` field may be given in ``overrides`` (``loss``,
    ``precision``; a test may shrink a size there too).

    Examples
    --------
    >>> from emseg_tutorial.presets import get_preset
    >>> train_config(get_preset("cpu"), task="boundary", weights="distance", init=True).steps
    80
    """
    budget = budget_of(task, init=init, jitter=jitter)
    sizes = dict(steps=budget_steps(preset, budget) if steps is None else steps, batch_size=preset.batch_size,
                 patch=preset.patch, lr=preset.lr, val_every=preset.val_every, model=dict(preset.model))
    return TrainConfig(task=task, weights=weights, jitter=jitter, seed=seed, device=device, **{**sizes, **overrides})


def stage_config(name: str, session: Session, seed: int = 0) -> TrainConfig:
    """The :class:`~emseg_tutorial.train.TrainConfig` of stage ``name``, sized by the session's
    preset, on its device and at its precision."""
    session = _session(session)
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {sorted(STAGES)}")
    s = STAGES[name]
    return train_config(session.preset, task=s.task, weights=s.weights, init=s.init is not None,
                        jitter=s.jitter, seed=seed, device=str(session.device), loss=s.loss,
                        precision=session.precision)


def _session(session: Session) -> Session:
    """``session``, checked: a :class:`~emseg_tutorial.session.Session`, never a global one in its place.

    Raises
    ------
    TypeError
        For anything else (None, a bare preset), in one line saying how to make one.

    Examples
    --------
    >>> from emseg_tutorial.presets import get_preset
    >>> _session(get_preset("ci"))
    Traceback (most recent call last):
    ...
    TypeError: expected a Session (session = emseg_tutorial.setup(...)), got Preset; a preset alone says nothing of the device, data or runs folder
    """
    if not isinstance(session, Session):
        hint = "; a preset alone says nothing of the device, data or runs folder" if isinstance(session, Preset) else ""
        raise TypeError(f"expected a Session (session = emseg_tutorial.setup(...)), got {type(session).__name__}{hint}")
    return session


def _fingerprint(config: TrainConfig, volume: Volume, parent: TrainResult | None) -> dict:
    """What a saved run must match to be reused: config, the package source
    (:func:`~emseg_tutorial._source.source_hash`), data and its parent's."""
    config = {k: v for k, v in config.to_dict().items() if k != "device"}  # same run on any device
    fp = {"config": config, "source": _source.source_hash(), "data": f"{volume.name}{volume.shape}",
          "digest": digest(volume.image, volume.labels), "init": parent.history["fingerprint"] if parent else None}
    return json.loads(json.dumps(fp, default=str))


def get_stage(name: str, session: Session, *, source: Volume | None = None,
              seed: int = 0, init_seed: int | None = None, retrain: bool = False) -> TrainResult:
    """Return the trained model of stage ``name``, training it (and its parents) if needed.

    Parameters
    ----------
    name : str
        A key of :data:`STAGES`.
    session : Session
        Settings of :func:`emseg_tutorial.setup`: its preset sizes the run, its device trains,
        its data source gives the training volume, its ``runs`` folder keeps the result, its
        ``progress`` shows bars, its ``compile`` trains through ``torch.compile``
        (``session.replace(preset=...)`` for another preset).
    source : Volume, optional
        Labelled training volume (default: the train split of the stage's ``domain``: the
        source's, the target's for the oracle stages).
    seed : int
        Training seed of this stage (weights of a new output layer, patch stream).
    init_seed : int, optional
        Seed of the stages it starts from (default: ``seed``). Chapter 4's seed table passes
        ``init_seed=0``: one M1, several fine-tuning seeds.
    retrain : bool
        Train even when a matching saved run exists.

    A stage read back from the runs folder says so in one line ("reused m2 (seed 0) from
    PATH"), and one continued from an interrupted run too; the parents it starts from are
    read back without a line of their own (they are part of the stage's fingerprint, not what
    the caller asked for).
    """
    session = _session(session)
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {sorted(STAGES)}")
    source = source if source is not None else load_domain(STAGES[name].domain, session, "train")
    return _stage(name, session, source, seed, init_seed, retrain, announce=True)


def _stage(name: str, session: Session, source: Volume, seed: int, init_seed: int | None, retrain: bool, *,
           announce: bool) -> TrainResult:
    """:func:`get_stage` on a given source volume; ``announce``: say so when it is read back."""
    config = stage_config(name, session, seed)
    stage = STAGES[name]
    parent_seed = seed if init_seed is None else init_seed
    parent = _stage(stage.init, session, source, parent_seed, None, False, announce=False) if stage.init else None
    fingerprint = _fingerprint(config, source, parent)
    parent_tag = "" if parent_seed == seed else f"-init{parent_seed}"  # a seed table's runs from one M1
    path = Path(session.runs) / session.preset.name / f"{name}-seed{seed}{parent_tag}.pt"
    what = f"{name} (seed {seed}{'' if parent_seed == seed else f', from seed {parent_seed}'})"
    if path.is_file() and not retrain:
        model, ckpt = load_checkpoint(path)
        if ckpt.get("history", {}).get("fingerprint") == fingerprint:
            if announce:
                note(f"reused {what} from {path}")
            return TrainResult(model=model, config=config, history=ckpt["history"])
    # An interrupted run of the same stage (same fingerprint) left its state here: continue it.
    state = path.with_name(f"{path.stem}-{fingerprint_key(fingerprint)}.state.pt")
    resume = load_training_state(state) if state.is_file() and not retrain else None
    if resume is not None:
        note(f"continuing {what} from {state} (step {resume['step']} of {config.steps})")
    run = train_supervised(source.image, source.labels, config, init=parent.model if parent else None,
                           progress=session.progress, checkpoint=state, resume=resume, compile=session.compile)
    run.history["fingerprint"] = fingerprint
    run.history["stage"] = name
    save_checkpoint(path, run.model, config=config.to_dict(), history=run.history)
    state.unlink(missing_ok=True)
    return run


def adapt_config(session: Session, method: str = "paper", seed: int = 0, **overrides) -> AdaptConfig:
    """An :class:`~emseg_tutorial.adapt.AdaptConfig` sized by the session's preset, on its device.

    The sizes are chapter 5's (``adapt_epochs``, ``adapt_steps_per_epoch``,
    ``adapt_report_stride``, ``batch_size``, ``patch``, ``discriminator`` of the preset);
    ``overrides`` replace any field (chapter 6 passes its
    :meth:`~emseg_tutorial.presets.ComparisonSize.adapt_settings`).

    Examples
    --------
    >>> from emseg_tutorial.session import from_env
    >>> adapt_config(from_env(preset="ci", device="cpu"), "paper").steps_per_epoch
    3
    """
    session = _session(session)
    preset = session.preset
    kwargs = dict(method=method, device=str(session.device), precision=session.precision, epochs=preset.adapt_epochs,
                  steps_per_epoch=preset.adapt_steps_per_epoch, report_stride=preset.adapt_report_stride,
                  batch_size=preset.batch_size, patch=preset.patch, seed=seed,
                  discriminator=dict(preset.discriminator))
    kwargs.update(overrides)
    return AdaptConfig(**kwargs)


def method_settings(session: Session, name: str, seed: int = 0, **overrides) -> dict:
    """The settings :func:`~emseg_tutorial.adapt.run_method` takes for method (or ablation) ``name``.

    A trained method gets its whole :func:`adapt_config` (the ablation's own overrides are added
    by ``run_method``); a one-pass method (AdaBN, histogram matching) only the settings its record
    reads (:attr:`~emseg_tutorial.adapt.registry.Method.options`), from the same preset and
    session, so the command line and chapter 6 build both kinds in one call.

    Examples
    --------
    >>> from emseg_tutorial.session import from_env
    >>> session = from_env(preset="ci", device="cpu")
    >>> sorted(method_settings(session, "adabn"))
    ['device', 'method', 'report_stride']
    >>> method_settings(session, "paper-hard-fake")["method"]
    'paper'
    """
    record = get_method(name)
    if record.trains:
        return adapt_config(session, record.variant_of or name, seed, **overrides).to_dict()
    every = {"device": str(session.device), "precision": session.precision, "seed": seed,
             "report_stride": session.preset.adapt_report_stride, **overrides}
    return {"method": name, **{k: v for k, v in every.items() if k in record.options}}


def run_adaptation(session: Session, method: str = "paper", *, seed: int = 0,
                   retrain: bool = False, **overrides) -> AdaptResult:
    """Adapt M3 to the target twin and score every epoch on the held-out target volume.

    The U-Net adapts on the target's *train* split (images only). The *test* split's labels
    score it after each epoch and are read nowhere else; the source's test split measures how
    far the network drifts from the source.

    The run is kept in the session's runs folder (:mod:`.runs`): its state is written after
    every epoch, a later call with the same settings, package source, volumes and M3 continues an
    interrupted run from its last epoch (the same result, bit for bit on a CPU, as a run never
    interrupted) and reads a finished one back instead of training it again. ``retrain``
    starts afresh.

    Examples
    --------
    >>> import inspect
    >>> "retrain" in inspect.signature(run_adaptation).parameters
    True
    """
    session = _session(session)
    m3 = get_stage("m3", session)
    source = load_domain("fibsem", session, "train")
    target = load_domain("snemi", session, "train")
    source_val, target_eval = load_domain("fibsem", session, "test"), load_domain("snemi", session, "test")
    config = adapt_config(session, method, seed, **overrides)
    fingerprint = adaptation_fingerprint(method, config.to_dict(), model=m3.history["fingerprint"],
                                         volumes={"source": source, "target": target, "source_val": source_val,
                                                  "target_eval": target_eval})
    state = unit_path(session, method, seed, fingerprint, "state.pt")
    resume = None if retrain else saved_state(state, f"adaptation {method} (seed {seed})", epochs=config.epochs)
    return adapt(m3.model, source.labels, target.image, config, source_image=source.image,
                 source_val=source_val, target_eval=target_eval, progress=session.progress,
                 checkpoint=state, resume=resume)
