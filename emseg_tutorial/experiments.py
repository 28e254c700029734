"""The paper's models as named stages, trained once per build and shared between chapters.

Each stage is one supervised run of :func:`~emseg_tutorial.train.train_supervised`:

=================  ==========  ==============  =========  =======  ===============================
stage              task        weights         starts at  jitter   paper
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
``m3``             boundary    distance        ``m2``     yes      jitter fine-tuning (M3)
=================  ==========  ==============  =========  =======  ===============================

Runs are saved under ``EMSEG_RUNS`` (default ``./runs``) as ``<preset>/<stage>.pt``. A later
chapter that needs a stage loads it when its config, code version and training volume match,
and trains it otherwise. ``make book`` and ``make test`` empty that folder first, so every
number in a build comes from models trained in that build.

Examples
--------
>>> STAGES["m2"].init, STAGES["m3"].jitter
('m1', True)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data.sources import load_domain
from .devices import pick_device
from .data.volume import Volume
from .labels import for_task
from .metrics import evaluate
from .predict import predict_probabilities, probabilities_to_codes
from .presets import Preset, get_preset
from .train import (AdaptConfig, AdaptResult, TrainConfig, TrainResult, adapt, experiment_config,
                    load_checkpoint, save_checkpoint, train_supervised)

RUNS_ENV = "EMSEG_RUNS"


@dataclass(frozen=True)
class Stage:
    """One named training run of the paper's pipeline."""

    task: str
    weights: str
    init: str | None = None
    jitter: bool = False
    description: str = ""


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
    "m3": Stage("boundary", "distance", "m2", jitter=True, description="M2 fine-tuned with random jitter"),
}


def runs_dir() -> Path:
    """Folder of saved stages: ``EMSEG_RUNS`` or ``./runs``."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


def stage_config(name: str, preset: Preset, seed: int = 0) -> TrainConfig:
    """The :class:`TrainConfig` of stage ``name`` at ``preset``."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {sorted(STAGES)}")
    s = STAGES[name]
    return experiment_config(preset, task=s.task, weights=s.weights, init=s.init is not None,
                             jitter=s.jitter, seed=seed)


def _fingerprint(config: TrainConfig, volume: Volume, parent: TrainResult | None) -> dict:
    """What a saved run must match to be reused: config, code version, data and its parent's."""
    import json

    digest = hashlib.blake2b(volume.image.tobytes(), digest_size=16)
    digest.update(volume.labels.tobytes())
    fp = {"config": config.to_dict(), "version": __version__, "data": f"{volume.name}{volume.shape}",
          "digest": digest.hexdigest(), "init": parent.history["fingerprint"] if parent else None}
    return json.loads(json.dumps(fp, default=str))


def get_stage(name: str, preset: Preset | None = None, *, source: Volume | None = None, seed: int = 0,
              progress: bool = True, retrain: bool = False) -> TrainResult:
    """Return the trained model of stage ``name``, training it (and its parents) if needed.

    Parameters
    ----------
    name : str
        A key of :data:`STAGES`.
    preset : Preset, optional
        Sizes (default: the current preset).
    source : Volume, optional
        Labelled training volume (default: the source's train split).
    seed : int
        Training seed.
    progress : bool
        Progress bars while training.
    retrain : bool
        Train even when a matching saved run exists.
    """
    preset = preset or get_preset()
    source = source if source is not None else load_domain("fibsem", preset, "train")
    config = stage_config(name, preset, seed)
    stage = STAGES[name]
    parent = get_stage(stage.init, preset, source=source, seed=seed, progress=progress) if stage.init else None
    fingerprint = _fingerprint(config, source, parent)
    path = runs_dir() / preset.name / f"{name}-seed{seed}.pt"
    if path.is_file() and not retrain:
        model, ckpt = load_checkpoint(path)
        if ckpt.get("history", {}).get("fingerprint") == fingerprint:
            return TrainResult(model=model, config=config, history=ckpt["history"])
    run = train_supervised(source.image, source.labels, config, init=parent.model if parent else None,
                           progress=progress)
    run.history["fingerprint"] = fingerprint
    run.history["stage"] = name
    save_checkpoint(path, run.model, config=config.to_dict(), history=run.history)
    return run


def score(model: torch.nn.Module, volume: Volume, task: str, *, tolerance: float = 0.0,
          return_prediction: bool = False, device: str | torch.device | None = None):
    """Predict ``volume`` with ``model`` and score it against its labels (:func:`~.metrics.evaluate`).

    Prediction runs on ``device`` (default: the best available, so a GPU when there is one).
    Returns the scores dict, or ``(scores, codes, probabilities)`` with ``return_prediction``.
    """
    probs = predict_probabilities(model, volume.image, device=pick_device(device))
    codes = probabilities_to_codes(probs)
    scores = evaluate(codes, for_task(volume.labels, task), task, tolerance=tolerance)
    return (scores, codes, probs) if return_prediction else scores


def scores_table(results: dict[str, dict], columns: list[str] | None = None) -> "pandas.DataFrame":
    """A table with one row per model: per-class Jaccard then the chosen summary scores."""
    import pandas as pd

    columns = columns or ["mean_jaccard", "boundary_jaccard", "boundary_f1", "adapted_rand_error",
                          "voi_split", "voi_merge"]
    rows = {}
    for name, s in results.items():
        row = {f"J {k}": v for k, v in s["jaccard"].items()}
        row.update({c: s[c] for c in columns})
        rows[name] = row
    return pd.DataFrame(rows).T.astype(float)


def validation_curve(history: dict, key: str = "mean_jaccard") -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of a validation score from a training history."""
    val = history.get("val", [])
    return np.array([v["step"] for v in val]), np.array([np.nan if v[key] is None else v[key] for v in val])


def adapt_config(preset: Preset, method: str = "paper", seed: int = 0, **overrides) -> AdaptConfig:
    """An :class:`~emseg_tutorial.train.AdaptConfig` sized by ``preset``."""
    kwargs = dict(method=method, epochs=preset.adapt_epochs, steps_per_epoch=preset.adapt_steps_per_epoch,
                  batch_size=preset.batch_size, patch=preset.patch, seed=seed,
                  discriminator=dict(preset.discriminator))
    kwargs.update(overrides)
    return AdaptConfig(**kwargs)


def run_adaptation(preset: Preset | None = None, method: str = "paper", *, seed: int = 0, progress: bool = True,
                   **overrides) -> AdaptResult:
    """Adapt M3 to the target twin and score every epoch on the held-out target volume.

    The U-Net adapts on the target's *train* split (images only). The *test* split's labels
    score it after each epoch and are read nowhere else; the source's test split measures how
    far the network drifts from the source.
    """
    preset = preset or get_preset()
    m3 = get_stage("m3", preset, progress=progress)
    source = load_domain("fibsem", preset, "train")
    target = load_domain("snemi", preset, "train")
    config = adapt_config(preset, method, seed, **overrides)
    return adapt(m3.model, source.labels, target.image, config, source_image=source.image,
                 source_val=load_domain("fibsem", preset, "test"), target_eval=load_domain("snemi", preset, "test"),
                 progress=progress)


TARGET_COLUMNS = ["boundary_jaccard", "boundary_f1", "adapted_rand_error", "voi_split", "voi_merge"]


def adaptation_table(history: dict) -> "pandas.DataFrame":
    """One row per epoch (0 = before adaptation): target scores and label-free diagnostics."""
    import pandas as pd

    rows = {}
    for r in history["epochs"]:
        row = {c: (r["target"] or {}).get(c) for c in TARGET_COLUMNS}
        row.update({"target boundary fraction": r["target_boundary_fraction"],
                    "target entropy": r["target_entropy"],
                    "source val boundary J": r["source_val_boundary_jaccard"],
                    "D acc real": r["d_acc_real"], "D acc fake": r["d_acc_fake"]})
        rows[r["epoch"]] = row
    table = pd.DataFrame(rows).T.astype(float)
    table.index.name = "epoch"
    return table


def adaptation_summary(history: dict, name: str = "adapted") -> "pandas.DataFrame":
    """Source-only vs adapted (last epoch, the main result) vs the best epoch.

    The best epoch is picked with the target labels, so it is labelled as an *oracle*: a user
    without target labels could not pick it.
    """
    table = adaptation_table(history)[TARGET_COLUMNS]
    best = table["boundary_jaccard"].iloc[1:].idxmax()
    out = table.loc[[0, table.index[-1], best]].copy()
    out.index = ["source only (M3)", f"{name}: last epoch", f"oracle: best epoch ({best}, picked with target labels)"]
    return out
