"""Scores and tables of the paper's experiments (chapters 3-5), and the findings they support.

The ``*_findings`` functions turn a build's results into Markdown sentences, each stamped with
the preset it came from, so that the chapters state conditional results (which weighting won,
whether transfer beat scratch) from the numbers of the build they appear in, never by hand.

Examples
--------
>>> validation_curve({"val": [{"step": 10, "mean_jaccard": 0.5}]})
(array([10]), array([0.5]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..data.sources import load_domain
from ..data.volume import Volume
from ..labels import for_task
from .. import metrics
from ..metrics import evaluate
from ..predict import predict_probabilities, probabilities_to_codes
from ..session import Session
from .stages import STAGES, _session, get_stage


def score(model: torch.nn.Module, volume: Volume, task: str, *, device: str | torch.device,
          tolerance: float = 0.0, return_prediction: bool = False):
    """Predict ``volume`` with ``model`` and score it against its labels (:func:`~.metrics.evaluate`).

    Prediction runs on ``device`` (a chapter passes ``session.device``), standardised with
    ``volume.normalizer`` (what ``predict`` of the volume's file computes).
    Returns the scores dict, or ``(scores, codes, probabilities)`` with ``return_prediction``.
    """
    probs = predict_probabilities(model, volume.image, normalizer=volume.normalizer, device=device)
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


# --------------------------------------------------------------------------------------
# Experiment 2's weightings over several training seeds (chapter 4)
# --------------------------------------------------------------------------------------
SEED_COLUMNS = ["boundary_jaccard", "mean_jaccard", "boundary_f1", "boundary_precision", "boundary_recall"]


def stage_label(name: str) -> str:
    """What a stage trains with: its weights, and its loss when that is not cross-entropy.

    Examples
    --------
    >>> stage_label("m2_ratio5"), stage_label("m2_focal")
    ('ratio:5', 'focal loss')
    """
    stage = STAGES[name]
    if stage.loss == "ce":
        return stage.weights
    loss = {"dice": "Dice loss", "focal": "focal loss", "ce+dice": "CE + Dice"}.get(stage.loss, stage.loss)
    return loss if stage.weights == "none" else f"{loss}, {stage.weights}"


def pixel_scores(model: torch.nn.Module, volume: Volume, task: str, *, device: str | torch.device,
                 stride: int = 1) -> dict:
    """Pixel scores only (mean Jaccard over the classes; boundary Jaccard, precision, recall and
    F1: :func:`~emseg_tutorial.metrics.pixel_scores` without the per-class dict) on every
    ``stride``-th slice of ``volume``: the cheap part of :func:`score`, for many runs. The slices
    are standardised with the whole volume's normaliser, so each is predicted as in :func:`score`."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    image, labels = volume.image[::stride], for_task(volume.labels[::stride], task)
    probs = predict_probabilities(model, image, normalizer=volume.normalizer, device=device)
    out = metrics.pixel_scores(probabilities_to_codes(probs), labels, task)
    del out["jaccard"]  # one row of the seed table: summary scores only
    return out


def seed_scores(names: Sequence[str], session: Session, *, seeds: Sequence[int] | None = None,
                stride: int | None = None, volume: Volume | None = None, init_seed: int = 0,
                task: str = "boundary") -> "pandas.DataFrame":
    """Train (or load) every stage of ``names`` with every seed and score each on held-out slices.

    Parameters
    ----------
    names : sequence of str
        Stages (:data:`~emseg_tutorial.paper.stages.STAGES`), e.g.
        :data:`~emseg_tutorial.paper.stages.WEIGHTING_STAGES`.
    session : Session
        Settings of :func:`emseg_tutorial.setup`. Its preset's ``weighting`` (a
        :class:`~emseg_tutorial.presets.WeightingSize`) gives the defaults below.
    seeds : sequence of int, optional
        Training seeds (default ``range(preset.weighting.seeds)``). Seed 0 is the run the
        rest of the book uses, so it is loaded, not trained again.
    stride : int, optional
        Score every ``stride``-th slice of the held-out volume (default
        ``preset.weighting.eval_stride``); the same slices for every run.
    volume : Volume, optional
        Labelled held-out volume (default: the source's test split).
    init_seed : int
        Seed of the stages they start from: with the default 0 every seed fine-tunes the same M1,
        so the spread is that of the fine-tuning alone (new output layer, patch stream).
    task : str
        Task the stages were trained for.

    Returns
    -------
    pandas.DataFrame
        One row per (stage, seed): ``stage``, ``weights`` (:func:`stage_label`), ``seed`` and
        the :data:`SEED_COLUMNS` scores.
    """
    import pandas as pd

    session = _session(session)
    size = session.preset.weighting
    seeds = list(range(size.seeds)) if seeds is None else [int(s) for s in seeds]
    stride = size.eval_stride if stride is None else stride
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    for name in names:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {sorted(STAGES)}")
    volume = volume if volume is not None else load_domain("fibsem", session, "test")
    rows = []
    for name in names:
        for seed in seeds:
            run = get_stage(name, session, seed=seed, init_seed=init_seed)
            scores = pixel_scores(run.model, volume, task, stride=stride, device=session.device)
            rows.append({"stage": name, "weights": stage_label(name), "seed": seed, **scores})
    long = pd.DataFrame(rows)
    long.attrs.update(preset=session.preset.name, stride=stride, init_seed=init_seed, seeds=seeds)
    return long


def seed_table(long: "pandas.DataFrame", columns: Sequence[str] | None = None) -> "pandas.DataFrame":
    """Mean, sample standard deviation and number of seeds of every score, one row per stage.

    Parameters
    ----------
    long : pandas.DataFrame
        From :func:`seed_scores` (columns ``stage``, ``weights``, ``seed`` and scores).
    columns : sequence of str, optional
        Scores to summarise (default: those of :data:`SEED_COLUMNS` present).

    Returns
    -------
    pandas.DataFrame
        Index: stage (in first-seen order); columns ``weights``, ``n`` and ``<score> mean``,
        ``<score> sd`` for each score (``sd`` is ``nan`` with one seed).

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"stage": ["a", "a", "b"], "weights": ["x", "x", "y"], "seed": [0, 1, 0],
    ...                      "boundary_jaccard": [0.5, 0.7, 0.4]})
    >>> seed_table(long).round(3).to_dict("index")["a"]
    {'weights': 'x', 'n': 2, 'boundary_jaccard mean': 0.6, 'boundary_jaccard sd': 0.141}
    """
    import pandas as pd

    columns = [c for c in (columns or SEED_COLUMNS) if c in long.columns]
    order = list(dict.fromkeys(long["stage"]))
    groups = long.groupby("stage", sort=False)
    table = pd.DataFrame(index=pd.Index(order, name="stage"))
    table["weights"] = (groups["weights"].first().reindex(order) if "weights" in long.columns
                        else table.index.to_series())  # without labels, the stage names
    table["n"] = groups["seed"].nunique().reindex(order).astype(int)
    for c in columns:
        table[f"{c} mean"] = groups[c].mean().reindex(order).astype(float)
        table[f"{c} sd"] = groups[c].std(ddof=1).reindex(order).astype(float)
    table.attrs.update(long.attrs)
    return table


def _difference(table, a: str, b: str, column: str) -> tuple[float, float]:
    """Mean of ``a`` minus mean of ``b`` and the standard error of that difference."""
    ra, rb = table.loc[a], table.loc[b]
    se = math.sqrt(ra[f"{column} sd"] ** 2 / ra["n"] + rb[f"{column} sd"] ** 2 / rb["n"])
    return float(ra[f"{column} mean"] - rb[f"{column} mean"]), se


def weighting_findings(table: "pandas.DataFrame", *, reference: str = "m2", column: str = "boundary_jaccard",
                       preset: str | None = None) -> str:
    """Which weighting won, and whether the paper's map beats each ratio by more than seed noise.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`seed_table`.
    reference : str
        The stage the others are compared with (the paper's M2).
    column : str
        Score compared (its ``mean`` and ``sd`` columns must be present).
    preset : str, optional
        Name stamped on the sentences (default: the table's ``attrs["preset"]``).

    Returns
    -------
    str
        Markdown: a header line and one bullet per finding.

    Notes
    -----
    A difference of means counts as larger than the seed noise when it exceeds twice its
    standard error, :math:`\\sqrt{s_a^2/n_a + s_b^2/n_b}`; with three seeds per run this is a
    rough guide, not a significance test, and the sentences say so.
    """
    preset = preset or table.attrs.get("preset", "this")
    mean, sd = table[f"{column} mean"], table[f"{column} sd"]
    n = int(table["n"].min())
    name = column.replace("_", " ")
    lines = [f"**Findings of this build** (at the {preset} preset, {name} on held-out source slices, "
             f"mean ± sd over {n} fine-tuning seed{'s' if n != 1 else ''} of one M1):", ""]
    best = mean.idxmax()
    lines.append(f"* Highest mean: **`{best}`** ({table.loc[best, 'weights']}) at {mean[best]:.3f} ± {sd[best]:.3f}; "
                 f"lowest: `{mean.idxmin()}` at {mean.min():.3f} ± {sd[mean.idxmin()]:.3f}.")
    if reference in table.index:
        if n < 2:
            lines.append("* With one seed per weighting the spread is unknown: no difference can be "
                         "weighed against seed noise.")
        else:
            beats, clear, lower, clearly_lower = [], [], [], []
            for other in [s for s in table.index if STAGES.get(s) and STAGES[s].weights.startswith("ratio:")]:
                diff, se = _difference(table, reference, other, column)
                beats.append(diff > 0)
                clear.append(diff > 2 * se)
                if diff <= 0:
                    lower.append(f"`{other}`")
                    if diff < -2 * se:
                        clearly_lower.append(f"`{other}`")
                verdict = ("larger than the seed noise" if abs(diff) > 2 * se
                           else "within the seed noise")
                lines.append(f"* `{reference}` minus `{other}` ({table.loc[other, 'weights']}): {diff:+.3f} "
                             f"(twice its standard error: {2 * se:.3f}; {verdict}).")
            if beats:
                if all(clear):
                    summary = "beats every fixed ratio by more than the seed noise, as the paper found"
                elif all(beats):
                    summary = ("has a higher mean than every fixed ratio, but not by more than the seed noise "
                               "against all of them")
                elif clearly_lower:
                    summary = (f"scores below {', '.join(clearly_lower)} by more than the seed noise, "
                               "unlike the paper's finding")
                else:
                    summary = (f"has a mean no higher than {', '.join(lower)}, but within the seed noise: "
                               "these seeds cannot tell them apart")
                lines.append(f"* The paper's smoothed distance map (`{reference}`) {summary} "
                             f"(at the {preset} preset; {n} seeds make this a rough check, not a test).")
    return "\n".join(lines)


def ratio_findings(table: "pandas.DataFrame", stages: Sequence[str] = ("m2_ratio2", "m2_ratio5", "m2_ratio10"),
                   *, preset: str) -> str:
    """How boundary recall, precision and Jaccard move as the fixed ratio grows (one sentence).

    ``table`` has one row per stage and columns ``boundary_recall``, ``boundary_precision``,
    ``boundary_jaccard`` (e.g. :func:`scores_table`), or their ``... mean`` versions
    (:func:`seed_table`).
    """
    def column(key):
        return table[key] if key in table.columns else table[f"{key} mean"]

    def trend(values):
        d = np.diff(values)
        return "rises" if (d > 0).all() else "falls" if (d < 0).all() else "does not move one way"

    stages = [s for s in stages if s in table.index]
    parts = []
    for key in ("boundary_recall", "boundary_precision", "boundary_jaccard"):
        values = column(key).loc[stages].to_numpy(dtype=float)
        parts.append(f"{key.split('_')[1]} {trend(values)} ({' -> '.join(f'{v:.3f}' for v in values)})")
    ratios = " -> ".join(STAGES[s].weights.split(":")[1] + ":1" for s in stages)
    return f"At the {preset} preset, from {ratios}: " + "; ".join(parts) + "."


def transfer_findings(m2_history: dict, scratch_history: dict, *, preset: str,
                      key: str = "boundary_jaccard") -> str:
    """Did starting from M1 beat training from scratch, at the same step and at the end?

    Compares the validation score of ``m2_history`` at its last validation with the scratch
    run's validation nearest in steps, and with the scratch run's last one (after its longer
    budget).
    """
    s_m2, v_m2 = validation_curve(m2_history, key)
    s_sc, v_sc = validation_curve(scratch_history, key)
    if not len(s_m2) or not len(s_sc):
        return f"At the {preset} preset the runs have no validation scores to compare."
    near = int(np.abs(s_sc - s_m2[-1]).argmin())

    def compare(a, b):
        return "higher than" if a > b else "lower than" if a < b else "equal to"

    return (f"At the {preset} preset, after {s_m2[-1]} steps the model started from M1 scores {v_m2[-1]:.3f} "
            f"on the validation slices, {compare(v_m2[-1], v_sc[near])} the scratch model at step {s_sc[near]} "
            f"({v_sc[near]:.3f}); with its whole budget of {s_sc[-1]} steps the scratch model reaches "
            f"{v_sc[-1]:.3f}, {compare(v_sc[-1], v_m2[-1])} the transferred one. These are single runs (seed 0): "
            f"weigh the differences against the seed spreads of the weighting table.")


def experiment1_findings(table: "pandas.DataFrame", *, weighted: str, plain: str, preset: str,
                         paper: float = 0.72) -> str:
    """Entropy weights against none, and against the paper's M1, as Markdown sentences.

    ``table`` is :func:`scores_table` of the held-out source volume with rows ``weighted`` and
    ``plain`` (columns ``mean_jaccard`` and ``J <class>``).
    """
    w, p = table.loc[weighted], table.loc[plain]
    classes = [c for c in table.columns if c.startswith("J ") and np.isfinite(w[c]) and np.isfinite(p[c])]
    gains = {c[2:]: float(w[c] - p[c]) for c in classes}
    winner = weighted if w["mean_jaccard"] > p["mean_jaccard"] else plain
    lines = [f"**Findings of this build** (at the {preset} preset, one seed, held-out source volume):", "",
             f"* Mean Jaccard: {weighted} {w['mean_jaccard']:.3f}, {plain} {p['mean_jaccard']:.3f}; "
             f"higher: **{winner}** (by {abs(w['mean_jaccard'] - p['mean_jaccard']):.3f})."]
    if gains:
        best, worst = max(gains, key=gains.get), min(gains, key=gains.get)
        lines.append(f"* Largest difference in favour of the weights: {best} ({gains[best]:+.3f}); "
                     f"least favourable: {worst} ({gains[worst]:+.3f}).")
    side = "above" if w["mean_jaccard"] >= paper else "below"
    lines.append(f"* {weighted} is {side} the paper's {paper:g} (a mean over four classes on its real FIBSEM "
                 f"volume) by {abs(w['mean_jaccard'] - paper):.3f}.")
    return "\n".join(lines)


def target_findings(table: "pandas.DataFrame", *, preset: str, column: str = "boundary_jaccard") -> str:
    """Source models on the target before adaptation: what jitter did (M2 -> M3) and how M3 built from
    the 10:1 distance map compares with M3, as Markdown sentences.

    ``table`` has one row per stage (``m2``, ``m3`` and optionally ``m3_distance10``) and the
    column ``column``.
    """
    v = table[column]
    lines = [f"**Findings of this build** (at the {preset} preset, one seed, {column.replace('_', ' ')} on "
             f"held-out target slices, before any adaptation):", ""]
    if "m2" in v and "m3" in v:
        verb = "raised" if v["m3"] > v["m2"] else "lowered" if v["m3"] < v["m2"] else "left"
        lines.append(f"* Jitter {verb} the score from {v['m2']:.3f} (M2) to {v['m3']:.3f} (M3).")
    if "m3" in v and "m3_distance10" in v:
        diff = v["m3_distance10"] - v["m3"]
        lines.append(f"* M3 built from the 10:1 distance map scores {v['m3_distance10']:.3f}, "
                     f"{abs(diff):.3f} {'above' if diff > 0 else 'below' if diff < 0 else 'level with'} M3.")
    return "\n".join(lines)
