"""Scores and tables of the paper's experiments (chapters 3-5): a model on a volume, runs side by side.

The seed table of chapter 4 is in :mod:`.seeds`, the sentences the chapters print in
:mod:`.sentences`.

Examples
--------
>>> validation_curve({"val": [{"step": 10, "mean_jaccard": 0.5}]})
(array([10]), array([0.5]))
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.volume import Volume
from ..labels import is_foreground_task
from .. import metrics
from ..metrics import evaluate
from ..predict import predict_probabilities, probabilities_to_codes


def score(model: torch.nn.Module, volume: Volume, task: str, *, device: str | torch.device,
          tolerance: float = 0.0, return_prediction: bool = False):
    """Predict ``volume`` with ``model`` and score it against its labels (:func:`~.metrics.evaluate`).

    Prediction runs on ``device`` (a chapter passes ``session.device``), standardised with
    ``volume.normalizer`` (what ``predict`` of the volume's file computes). ``volume.labels`` hold
    the codes ``0..4``; a foreground task's scores include its average precision.
    Returns the scores dict, or ``(scores, codes, probabilities)`` with ``return_prediction``.
    """
    probs = predict_probabilities(model, volume.image, normalizer=volume.normalizer, device=device)
    codes = probabilities_to_codes(probs)
    # a foreground task's scores read the probabilities: its average precision, and its objects (the
    # components where the probability is >= 0.5); the other tasks' cells come from the codes
    scores = evaluate(codes, volume.labels, task, tolerance=tolerance,
                      probabilities=probs if is_foreground_task(task) else None)
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



def score_slices(model: torch.nn.Module, volume: Volume, task: str, *, device: str | torch.device,
                 stride: int = 1) -> dict:
    """Pixel scores only (mean Jaccard over the classes; boundary Jaccard, precision, recall and
    F1: :func:`~emseg_tutorial.metrics.pixel_scores` without the per-class dict) on every
    ``stride``-th slice of ``volume``: the cheap part of :func:`score`, for many runs. The slices
    are standardised with the whole volume's normaliser, so each is predicted as in :func:`score`."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    image, labels = volume.image[::stride], volume.labels[::stride]  # codes 0..4: the metrics reduce them
    probs = predict_probabilities(model, image, normalizer=volume.normalizer, device=device)
    out = metrics.pixel_scores(probabilities_to_codes(probs), labels, task)
    del out["jaccard"]  # one row of the seed table: summary scores only
    return out
