"""Chapter 4's seed table: every weighting trained with several seeds, and its statistics.

:func:`seed_scores` trains (or loads) each stage per seed and scores it with
:func:`~.scores.score_slices`; :func:`seed_table` summarises the runs (mean, sd, n), and
:func:`_difference` weighs two rows against the seed noise for
:func:`~.sentences.weighting_findings`.

Examples
--------
>>> stage_label("m2_ratio5")
'ratio:5'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..data.sources import load_domain
from ..data.volume import Volume
from ..session import Session
from .scores import score_slices
from .stages import STAGES, _session, get_stage


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
            scores = score_slices(run.model, volume, task, stride=stride, device=session.device)
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
