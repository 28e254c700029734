"""What an adaptation run can tell without target labels, and which checkpoint to keep.

After every epoch the adaptation loop records a *report* (:func:`epoch_report`): the fraction
of target pixels predicted as boundary against the fraction the unadapted network predicts on
the source (:func:`source_reference`), the mean prediction entropy on the target, the source validation boundary Jaccard and, for adversarial
methods, the discriminator's accuracy. Scores on labelled target volumes are added only when
the caller gives them (``report["target"]``); nothing here that judges a run reads them.

A run of a one-vs-rest task other than the boundary (mitochondria: ``epoch_report(task=...)``)
is read the same way, with "boundary" meaning the task's class (code 1) throughout: its
predicted fraction against the source's, its source validation Jaccard. The keys keep their
names, so every run is read by one set of functions.

The boundary fraction compares like with like: a network's predicted walls on the target
against the same network's predicted walls on the source, before adaptation
(``source_boundary_fraction``, from :func:`source_reference`; the source labels' own share,
``source_label_fraction``, is recorded beside it). A network trained with wall-heavy weights
draws walls thicker than the labels on both domains alike, so against the labels its
unadapted target fraction would already sit off the band; against its own source fraction it
sits where the domains' true fractions put it (the twins label walls at one width in nm, so
theirs agree). Without a source validation volume the labels' share is the reference.

One set of thresholds, fixed before any target score was looked at, drives both uses:

* :func:`warnings_of` / :func:`adaptation_warnings` name the warning signs of a report
  (chapter 5's exercise):

  - ``"discriminator wins"``: discriminator accuracy >= :data:`DISCRIMINATOR_WINS` on real
    *and* fake maps;
  - ``"boundary fraction"``: predicted target boundary fraction more than
    :data:`PRIOR_FACTOR` times above or below the source's (``source_boundary_fraction``);
  - ``"entropy collapse"``: target entropy below :data:`ENTROPY_DROP` of its value before
    adaptation;
  - ``"source drift"``: source validation boundary Jaccard down by more than
    :data:`MAX_SOURCE_DROP` (when recorded).

* :func:`label_free_choice` (chapter 6) keeps, among the epochs with neither ``"source
  drift"`` nor ``"boundary fraction"``, the one with the lowest target entropy; with none
  left it keeps the model from before adaptation (epoch 0). It is a heuristic; chapter 6
  reports it next to the **oracle** (:func:`oracle_choice`, the epoch with the best target
  Jaccard, which needs the labels a user does not have).

Examples
--------
>>> epochs = [
...     {"epoch": 0, "source_val_boundary_jaccard": 0.80, "target_boundary_fraction": 0.12,
...      "source_boundary_fraction": 0.12, "target_entropy": 0.50},
...     {"epoch": 1, "source_val_boundary_jaccard": 0.79, "target_boundary_fraction": 0.14,
...      "source_boundary_fraction": 0.12, "target_entropy": 0.40},
...     {"epoch": 2, "source_val_boundary_jaccard": 0.79, "target_boundary_fraction": 0.02,
...      "source_boundary_fraction": 0.12, "target_entropy": 0.10},   # collapsed: no walls
... ]
>>> label_free_choice(epochs)
1
>>> sorted(adaptation_warnings({"epochs": epochs}))
['boundary fraction', 'entropy collapse']
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..data.normalize import Normalizer, normalizer_of
from ..data.volume import Volume
from ..labels import BOUNDARY, for_task, is_foreground_task
from ..metrics import boundary_scores, evaluate, headline_key
from ..predict import predict_labels, predict_probabilities, probabilities_to_codes

#: Source validation boundary Jaccard may fall at most this much.
MAX_SOURCE_DROP = 0.05
#: Predicted target boundary fraction within this factor of the source's.
PRIOR_FACTOR = 1.5
#: Discriminator accuracy at which it "wins" (on real and fake alike).
DISCRIMINATOR_WINS = 0.9
#: Target entropy below this share of its value before adaptation is a collapse.
ENTROPY_DROP = 0.5
#: The warnings :func:`warnings_of` can raise, in the order chapter 5 explains them.
WARNINGS = ("discriminator wins", "boundary fraction", "entropy collapse", "source drift")
#: Warnings that disqualify a checkpoint in :func:`label_free_choice`.
DISQUALIFYING = ("boundary fraction", "source drift")


# --------------------------------------------------------------------------- reports


def source_boundary_prior(labels: np.ndarray) -> float:
    """Share of the labelled source pixels that are boundary: what the target's predicted
    boundary fraction is compared with.

    The boundary is code 1 in the four-class codes and in the boundary task's alike, so
    ``labels`` may be either, as they are (no copy, no conversion); 0 (unlabelled) is left out,
    as in :func:`~emseg_tutorial.labels.class_fractions`.

    Examples
    --------
    >>> source_boundary_prior(np.array([[1, 2], [4, 0]]))
    0.3333333333333333
    """
    labelled = np.count_nonzero(labels)
    return float(np.count_nonzero(labels == BOUNDARY) / labelled) if labelled else 0.0


def source_reference(model: torch.nn.Module | None, label_fraction: float, device: torch.device,
                     source_val: Volume | None = None, stride: int = 1) -> dict[str, float]:
    """The source side of the boundary-fraction rule, taken once per run from the unadapted
    ``model``.

    Returns ``source_boundary_fraction``, what a predicted target boundary fraction is compared
    with: the share of boundary that ``model`` predicts on ``source_val``'s images (every
    ``stride``-th slice, with its volume's normaliser), or the labels' share when no
    ``source_val`` is given; and ``source_label_fraction``, the labels' share
    ``label_fraction`` (:func:`source_boundary_prior` of the source labels).

    Examples
    --------
    Without ``source_val`` the model is not run:

    >>> source_reference(None, source_boundary_prior(np.array([[1, 2], [2, 2]])), torch.device("cpu"))
    {'source_boundary_fraction': 0.25, 'source_label_fraction': 0.25}
    """
    label = float(label_fraction)
    if source_val is None:
        return {"source_boundary_fraction": label, "source_label_fraction": label}
    codes = predict_labels(model, source_val.image[::stride], normalizer=source_val.normalizer, device=device)
    return {"source_boundary_fraction": float((codes == BOUNDARY).mean()), "source_label_fraction": label}


def reference_of(report: Mapping) -> dict[str, float]:
    """The :func:`source_reference` entries of a ``report`` (what a run compares with).

    Examples
    --------
    >>> reference_of({"source_boundary_fraction": 0.14, "source_label_fraction": 0.11, "epoch": 0})
    {'source_boundary_fraction': 0.14, 'source_label_fraction': 0.11}
    """
    fraction = report["source_boundary_fraction"]
    return {"source_boundary_fraction": fraction, "source_label_fraction": report.get("source_label_fraction", fraction)}


def target_diagnostics(probabilities: np.ndarray) -> dict:
    """``target_boundary_fraction`` and ``target_entropy`` (mean entropy over the pixels, in
    units of ``log C``) of target probabilities ``(C, Z, Y, X)``: the label-free part of
    :func:`epoch_report`.

    Examples
    --------
    >>> target_diagnostics(np.full((2, 1, 2, 2), 0.5))
    {'target_boundary_fraction': 1.0, 'target_entropy': 1.0}
    """
    p = np.clip(probabilities, 1e-7, 1.0)
    entropy = float((-(p * np.log(p)).sum(0) / np.log(probabilities.shape[0])).mean())
    codes = probabilities_to_codes(probabilities)
    return {"target_boundary_fraction": float((codes == BOUNDARY).mean()), "target_entropy": entropy}


def epoch_report(model: torch.nn.Module, target_image: np.ndarray, source_prior: float | Mapping[str, float],
                 device: torch.device,
                 source_val: Volume | None = None, target_eval: Volume | None = None, stride: int = 1, *,
                 normalizer: Normalizer | None = None, task: str = "boundary") -> dict:
    """Label-free diagnostics on the target (and source validation / target scores when given).

    ``source_prior`` is what the target's predicted boundary fraction is compared with: the
    :func:`source_reference` of the run (recorded as is), or one fraction (recorded as both its
    entries).
    ``stride`` thins the target and source-validation slices of the diagnostics (not the
    target evaluation volume, which is scored whole). Every slice is standardised with its
    whole volume's normaliser: ``normalizer`` for ``target_image`` (default: computed from the
    whole ``target_image``; the adaptation loop computes it once per run and passes it),
    :attr:`Volume.normalizer <emseg_tutorial.data.volume.Volume.normalizer>` for
    ``source_val`` and ``target_eval``. So ``stride`` changes which slices are scored, never
    how a slice is predicted. The discriminator entries (``d_acc_real``, ``d_acc_fake``) are
    None here; the loop fills them from its steps. ``task`` is the model's two-class task: the
    labels of ``source_val`` and ``target_eval`` (codes ``0..4``) are scored in its codes.
    """
    target_norm = normalizer_of(target_image, normalizer)  # of the whole volume, before thinning
    probs = predict_probabilities(model, target_image[::stride], normalizer=target_norm, device=device)
    found = target_diagnostics(probs)
    reference = (reference_of(source_prior) if isinstance(source_prior, Mapping)
                 else reference_of({"source_boundary_fraction": float(source_prior)}))
    report = {"target_boundary_fraction": found["target_boundary_fraction"], **reference,
              "target_entropy": found["target_entropy"], "source_val_boundary_jaccard": None, "target": None,
              "d_acc_real": None, "d_acc_fake": None}
    if source_val is not None:
        src = predict_labels(model, source_val.image[::stride], normalizer=source_val.normalizer, device=device)
        report["source_val_boundary_jaccard"] = boundary_scores(src, for_task(source_val.labels[::stride], task))[
            "boundary_jaccard"]  # the Jaccard of code 1: the boundary, or the task's class
    if target_eval is not None:
        probs = predict_probabilities(model, target_eval.image, normalizer=target_eval.normalizer, device=device)
        report["target"] = evaluate(probabilities_to_codes(probs), target_eval.labels, task,  # AP: a foreground task
                                    probabilities=probs if is_foreground_task(task) else None)
    return report


def boundary_snapshot(model: torch.nn.Module, volume: np.ndarray, z: int, device: torch.device, *,
                      normalizer: Normalizer | None = None) -> np.ndarray:
    """Boundary probability of slice ``z`` of ``volume`` (the paper's Fig. 6 pictures).

    The slice is standardised with the whole volume's ``normalizer`` (default: computed from
    the whole ``volume``), so the picture is that slice of the whole-volume prediction the
    scores beside it come from.
    """
    norm = normalizer_of(volume, normalizer)
    probs = predict_probabilities(model, volume[z:z + 1], normalizer=norm, device=device)
    return probs[BOUNDARY - 1, 0]


def new_history(config: dict, initial_report: dict, snapshot_slice: int | None = None) -> dict:
    """The history every adaptation run returns: its config, and epoch 0 (before adaptation).

    Trained methods add one report per epoch with :func:`add_epoch`; the one-shot methods
    (AdaBN, histogram matching) add one, so every run is read the same way.
    """
    history = {"config": dict(config), "train": {"step": []}, "epochs": [{"epoch": 0, **initial_report}]}
    if snapshot_slice is not None:
        history["snapshot_slice"] = snapshot_slice
    return history


def add_epoch(history: dict, report: dict) -> dict:
    """Append ``report`` as the next epoch of ``history``; returns the row."""
    row = {"epoch": history["epochs"][-1]["epoch"] + 1, **report}
    history["epochs"].append(row)
    return row


# --------------------------------------------------------------------------- judging a report


def boundary_band(fraction: float, prior: float, prior_factor: float = PRIOR_FACTOR) -> str:
    """Where a predicted boundary ``fraction`` sits against the source's ``prior``
    (``source_boundary_fraction``):
    ``"vanish"`` (below ``prior / prior_factor``), ``"spread"`` (above ``prior * prior_factor``)
    or ``"within"``; ``"within"`` when there is no prior (``prior <= 0``).

    Examples
    --------
    >>> boundary_band(0.05, 0.11), boundary_band(0.12, 0.11), boundary_band(0.2, 0.11)
    ('vanish', 'within', 'spread')
    """
    if prior <= 0:
        return "within"
    ratio = fraction / prior
    return "vanish" if ratio < 1 / prior_factor else "spread" if ratio > prior_factor else "within"


def warnings_of(report: Mapping, before: Mapping, *, accuracy: float = DISCRIMINATOR_WINS,
                prior_factor: float = PRIOR_FACTOR, entropy_drop: float = ENTROPY_DROP,
                max_source_drop: float = MAX_SOURCE_DROP) -> set[str]:
    """The warning signs (a subset of :data:`WARNINGS`) of ``report`` against the report
    ``before`` adaptation; see the module docstring. Reads no target labels."""
    found = set()
    real, fake = report.get("d_acc_real"), report.get("d_acc_fake")
    if real is not None and fake is not None and min(real, fake) >= accuracy:
        found.add("discriminator wins")
    if boundary_band(report["target_boundary_fraction"], report["source_boundary_fraction"], prior_factor) != "within":
        found.add("boundary fraction")
    if report["target_entropy"] < entropy_drop * before["target_entropy"]:
        found.add("entropy collapse")
    src, src0 = report.get("source_val_boundary_jaccard"), before.get("source_val_boundary_jaccard")
    if src is not None and src0 is not None and src0 - src > max_source_drop:
        found.add("source drift")
    return found


def adaptation_warnings(history: Mapping, **thresholds) -> set[str]:
    """The warning signs of the last epoch of an adaptation ``history`` (empty before any epoch).

    Parameters
    ----------
    history : mapping
        An adaptation history: ``history["epochs"]`` is a list of reports, epoch 0 first.
    **thresholds
        ``accuracy``, ``prior_factor``, ``entropy_drop``, ``max_source_drop`` of :func:`warnings_of`.

    Notes
    -----
    These are warnings, not proofs: a sharper, more confident network can also be a better
    one; chapter 5 compares them with the scores on held-out target labels.
    """
    epochs = list(history["epochs"])
    return warnings_of(epochs[-1], epochs[0], **thresholds) if len(epochs) > 1 else set()


def passes(report: Mapping, before: Mapping, **thresholds) -> bool:
    """Whether a checkpoint may be kept: none of the :data:`DISQUALIFYING` warnings."""
    return not set(DISQUALIFYING) & warnings_of(report, before, **thresholds)


def label_free_choice(epochs: list[dict], **thresholds) -> int:
    """The epoch kept without target labels (0: adaptation rejected).

    Parameters
    ----------
    epochs : list of dict
        Per-epoch reports of an adaptation run (``history["epochs"]``), epoch 0 first. Only the
        keys ``epoch``, ``source_val_boundary_jaccard``, ``target_boundary_fraction``,
        ``source_boundary_fraction`` and ``target_entropy`` are read; never ``target``.
    **thresholds
        As in :func:`warnings_of`.
    """
    if not epochs:
        raise ValueError("no epochs to choose from")
    before = epochs[0]
    kept = [e for e in epochs[1:] if passes(e, before, **thresholds)]
    return min(kept, key=lambda e: e["target_entropy"])["epoch"] if kept else before["epoch"]


def oracle_choice(epochs: list[dict], key: str | None = None) -> int:
    """The adapted epoch (>= 1) with the best target score: needs the target labels.

    ``key`` defaults to the headline score of the scores' task
    (:func:`~emseg_tutorial.metrics.headline_key`): the boundary Jaccard, or a foreground task's IoU.

    Examples
    --------
    >>> oracle_choice([{"epoch": 0, "target": {"boundary_jaccard": 0.5}},
    ...                {"epoch": 1, "target": {"boundary_jaccard": 0.4}},
    ...                {"epoch": 2, "target": {"boundary_jaccard": 0.45}}])
    2
    """
    adapted = [e for e in epochs[1:] if e.get("target")]
    if not adapted:
        raise ValueError("oracle selection needs target scores of at least one adapted epoch")
    key = key or headline_key(adapted[0]["target"].get("task", "boundary"))
    return max(adapted, key=lambda e: e["target"][key])["epoch"]


def kept_summary(stop: Mapping | None, epochs: list[dict]) -> str:
    """One line saying which epoch an adaptation run returned, and why it stopped.

    ``stop`` is ``history["stop"]`` of :func:`~emseg_tutorial.adapt.adapt` (None for a
    one-pass method: ``""``), ``epochs`` its reports.

    Examples
    --------
    >>> kept_summary({"reason": "patience", "epoch": 3, "keep": "label-free", "kept_epoch": 1}, [{}] * 4)
    'stopped after epoch 3 (no new label-free choice for 2 epochs); kept epoch 1, the label-free choice (lowest target entropy without a boundary-fraction or source-drift warning)'
    >>> kept_summary({"reason": "epochs", "epoch": 2, "keep": "label-free", "kept_epoch": 0}, [{}] * 3)
    'ran 2 epochs; kept epoch 0, the model before adaptation: every adapted epoch raised a boundary-fraction or source-drift warning'
    """
    if not stop:
        return ""
    ran = (f"stopped after epoch {stop['epoch']} (no new label-free choice for {stop['epoch'] - stop['kept_epoch']} "
           f"epochs)" if stop["reason"] == "patience" else f"ran {stop['epoch']} epochs")
    if stop.get("keep") != "label-free":
        return f"{ran}; kept the last epoch"
    if stop["kept_epoch"] == 0:
        return (f"{ran}; kept epoch 0, the model before adaptation: every adapted epoch raised a boundary-fraction "
                f"or source-drift warning")
    return (f"{ran}; kept epoch {stop['kept_epoch']}, the label-free choice (lowest target entropy without a "
            f"boundary-fraction or source-drift warning)")
