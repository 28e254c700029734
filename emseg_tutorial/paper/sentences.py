"""The findings of chapters 3 and 4 in sentences, from the numbers of the build they appear in.

The ``*_findings`` functions turn a build's results into Markdown sentences, each stamped with
the preset it came from, so that the chapters state conditional results (which weighting won,
whether transfer beat scratch) from the numbers of the build they appear in, never by hand.
(Chapter 5's are in :mod:`.adaptation`, chapter 6's in :mod:`.comparison`.)

At a preset smaller than ``cpu`` (:data:`SMALL_PRESETS`) the runs are too short for some of the
claims the chapters' stories make. Every findings function then ends with
:func:`small_preset_note`: which of its claims need the ``cpu`` preset or larger, and, from the
run's own numbers, what this run shows instead.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"boundary_jaccard": [0.5, 0.6]}, index=["m2", "m3"])
>>> print(target_findings(table, preset="cpu").splitlines()[-1])
* Jitter raised the score from 0.500 (M2) to 0.600 (M3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .scores import validation_curve
from .seeds import _difference
from .stages import STAGES


#: Presets smaller than ``cpu``: too few steps for some of the chapters' claims (their findings say which).
SMALL_PRESETS = ("ci", "lab")
#: A boundary Jaccard below this means the walls were essentially not found (a collapsed run).
WALLS_FOUND = 0.1


def small_preset_note(preset: str, claims: Sequence[tuple[str, bool, str]]) -> str:
    """At a small preset, which claims of a findings cell need ``cpu`` and what this run shows.

    Parameters
    ----------
    preset : str
        The run's preset; at ``cpu``, ``gpu`` (or any name not in :data:`SMALL_PRESETS`) the
        note is empty.
    claims : sequence of (str, bool, str)
        ``(claim, shown, numbers)``: a claim of the chapter as the ``cpu`` preset's runs make it,
        whether this run shows it too, and the run's numbers that decide it.

    Returns
    -------
    str
        Markdown to append to the findings ("" when there is nothing to say).

    Examples
    --------
    >>> print(small_preset_note("ci", [("Weights beat no weights", False, "M1 0.40, no weights 0.45")]))
    <BLANKLINE>
    **At the `ci` preset**, smaller than `cpu`, the runs are too short for every claim of this chapter: the ones below need the `cpu` preset or larger. This run, claim by claim:
    <BLANKLINE>
    - Weights beat no weights: **not shown by this run** (M1 0.40, no weights 0.45).
    >>> small_preset_note("cpu", [("Weights beat no weights", False, "M1 0.40, no weights 0.45")])
    ''
    """
    if preset not in SMALL_PRESETS or not claims:
        return ""
    lines = ["", f"**At the `{preset}` preset**, smaller than `cpu`, the runs are too short for every claim of "
             "this chapter: the ones below need the `cpu` preset or larger. This run, claim by claim:", ""]
    for claim, shown, numbers in claims:
        verdict = "shown by this run too" if shown else "**not shown by this run**"
        lines.append(f"- {claim}: {verdict} ({numbers}).")  # "-": apart from the findings' own "*" bullets
    return "\n".join(lines)


def with_small_preset_note(text: str, preset: str, claims: Sequence[tuple[str, bool, str]]) -> str:
    """``text`` followed by :func:`small_preset_note` (``text`` alone where the note is empty)."""
    note = small_preset_note(preset, claims)
    return f"{text}\n{note}" if note else text


def weighting_findings(table: "pandas.DataFrame", *, reference: str = "m2", column: str = "boundary_jaccard",
                       preset: str | None = None) -> str:
    """Which weighting won, and whether the paper's map beats each ratio by more than seed noise.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`~.seeds.seed_table`.
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
    claims = []
    mean, sd = table[f"{column} mean"], table[f"{column} sd"]
    n = int(table["n"].min())
    name = column.replace("_", " ")
    lines = [f"**Findings of this build** (at the {preset} preset, {name} on held-out source slices, "
             f"mean ± sd over {n} fine-tuning seed{'s' if n != 1 else ''} of one M1):", ""]
    best = mean.idxmax()
    claims.append((f"Every weighting finds the walls (mean {name} at least {WALLS_FOUND} for each)",
                   bool(mean.min() >= WALLS_FOUND), f"lowest mean `{mean.idxmin()}` {mean.min():.3f}"))
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
                claims.append((f"The paper's smoothed distance map (`{reference}`) has a higher mean than every "
                               "fixed ratio", all(beats), f"`{reference}` {mean[reference]:.3f}; ratios "
                               + ", ".join(f"`{o}` {mean[o]:.3f}" for o in table.index
                                           if STAGES.get(o) and STAGES[o].weights.startswith("ratio:"))))
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
    return with_small_preset_note("\n".join(lines), preset, claims)


def ratio_findings(table: "pandas.DataFrame", stages: Sequence[str] = ("m2_ratio2", "m2_ratio5", "m2_ratio10"),
                   *, preset: str) -> str:
    """How boundary recall, precision and Jaccard move as the fixed ratio grows (one sentence).

    ``table`` has one row per stage and columns ``boundary_recall``, ``boundary_precision``,
    ``boundary_jaccard`` (e.g. :func:`~.scores.scores_table`), or their ``... mean`` versions
    (:func:`~.seeds.seed_table`).
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
    text = f"At the {preset} preset, from {ratios}: " + "; ".join(parts) + "."
    trade = (trend(column("boundary_recall").loc[stages].to_numpy(dtype=float)) == "rises"
             and trend(column("boundary_precision").loc[stages].to_numpy(dtype=float)) == "falls")
    return with_small_preset_note(text, preset, [("A larger ratio trades precision for recall (recall rises, precision falls)",
                                      trade, "; ".join(parts[:2]))])


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

    text = (f"At the {preset} preset, after {s_m2[-1]} steps the model started from M1 scores {v_m2[-1]:.3f} "
            f"on the validation slices, {compare(v_m2[-1], v_sc[near])} the scratch model at step {s_sc[near]} "
            f"({v_sc[near]:.3f}); with its whole budget of {s_sc[-1]} steps the scratch model reaches "
            f"{v_sc[-1]:.3f}, {compare(v_sc[-1], v_m2[-1])} the transferred one. These are single runs (seed 0): "
            f"weigh the differences against the seed spreads of the weighting table.")
    return with_small_preset_note(text, preset, [
        ("Starting from M1 beats training from scratch at the same step", bool(v_m2[-1] > v_sc[near]),
         f"{v_m2[-1]:.3f} against {v_sc[near]:.3f} at step {s_sc[near]}"),
        (f"Both boundary models find the walls ({key.replace('_', ' ')} at least {WALLS_FOUND})",
         bool(min(v_m2[-1], v_sc[-1]) >= WALLS_FOUND), f"from M1 {v_m2[-1]:.3f}, from scratch {v_sc[-1]:.3f}")])


def experiment1_findings(table: "pandas.DataFrame", *, weighted: str, plain: str, preset: str,
                         paper: float = 0.72) -> str:
    """Entropy weights against none, and against the paper's M1, as Markdown sentences.

    ``table`` is :func:`~.scores.scores_table` of the held-out source volume with rows ``weighted`` and
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
    claims = [(f"Entropy weights ({weighted}) score a higher mean Jaccard than {plain}",
               bool(w["mean_jaccard"] > p["mean_jaccard"]), f"{w['mean_jaccard']:.3f} against {p['mean_jaccard']:.3f}")]
    if "J boundary" in classes:
        claims.append((f"{weighted} finds the walls (boundary Jaccard at least {WALLS_FOUND})",
                       bool(w["J boundary"] >= WALLS_FOUND), f"{w['J boundary']:.3f}"))
    return with_small_preset_note("\n".join(lines), preset, claims)


def target_findings(table: "pandas.DataFrame", *, preset: str, column: str = "boundary_jaccard") -> str:
    """Source models on the target before adaptation: what jitter did (M2 -> M3) and how M3 built from
    the 10:1 distance map compares with M3, as Markdown sentences.

    ``table`` has one row per stage (``m2``, ``m3`` and optionally ``m3_distance10``) and the
    column ``column``.
    """
    v = table[column]
    lines = [f"**Findings of this build** (at the {preset} preset, one seed, {column.replace('_', ' ')} on "
             f"held-out target slices, before any adaptation):", ""]
    claims = []
    if "m2" in v and "m3" in v:
        verb = "raised" if v["m3"] > v["m2"] else "lowered" if v["m3"] < v["m2"] else "left"
        lines.append(f"* Jitter {verb} the score from {v['m2']:.3f} (M2) to {v['m3']:.3f} (M3).")
        claims.append(("Jitter (M3) raises the source model's target score over M2", bool(v["m3"] > v["m2"]),
                       f"M2 {v['m2']:.3f}, M3 {v['m3']:.3f}"))
    if "m3" in v and "m3_distance10" in v:
        diff = v["m3_distance10"] - v["m3"]
        lines.append(f"* M3 built from the 10:1 distance map scores {v['m3_distance10']:.3f}, "
                     f"{abs(diff):.3f} {'above' if diff > 0 else 'below' if diff < 0 else 'level with'} M3.")
    return with_small_preset_note("\n".join(lines), preset, claims)
