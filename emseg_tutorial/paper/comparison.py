"""Chapter 6: every adaptation method, several seeds, one honest table.

Each method of :mod:`emseg_tutorial.adapt.methods` starts from the same source model (M3 of
:mod:`.stages`) and adapts to the same unlabelled target volume (the target's *train* split).
The target's *test* split is scored after every epoch with its labels; those scores feed the
tables only. Two columns are the main result: the **last** epoch, and the epoch kept by the
**label-free** rule of :mod:`emseg_tutorial.adapt.diagnostics`. The **oracle** (best epoch by
target Jaccard) is reported apart, as an upper bound no user without labels can reach.
Deterministic methods (AdaBN, histogram matching) run once; a variant (an ablation, such as
``conditional-raw`` or the hard-vs-soft ablations ``paper-soft-real`` and ``paper-hard-fake``)
runs with the first seed only.

Which methods are deterministic, trained or ablations is read from their records
(:mod:`emseg_tutorial.adapt.registry`).

Examples
--------
>>> from emseg_tutorial.adapt import get_method
>>> get_method("adabn").deterministic
True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from ..adapt.diagnostics import (PRIOR_FACTOR, boundary_band, boundary_snapshot, epoch_report, headline_key,
                                 source_boundary_prior, source_reference)
from ..adapt.loop import AdaptConfig
from ..adapt.methods import MethodRun, run_method
from ..adapt.registry import ablation_names, get_method, method_names
from ..data.sources import load_domain
from ..data.volume import Volume
from ..labels import for_task
from ..session import Session
from .runs import adaptation_fingerprint, load_run, save_run, saved_state, unit_path, volume_digests
from .gap import GapScores, gap_table, no_skill, oracle_scores, provenance_note
from .stages import _session, get_stage, method_settings
from .sentences import with_small_preset_note

SCORES = ("boundary_jaccard", "boundary_f1", "adapted_rand_error")
#: A conditional discriminator that catches this much larger a share of target pairs than of
#: wrong-slice pairs is read as telling the domains apart rather than judging the pairing.
DOMAIN_GAP = 0.2


@dataclass
class Comparison:
    """All runs of a comparison, the source-only report and what the pictures need.

    ``seconds`` is the time this call took; ``reused`` counts the runs read back from the runs
    folder instead of run (:mod:`.runs`).
    """

    runs: list[MethodRun]
    source_only: dict
    snapshot_slice: int
    target_eval: Volume
    source_only_snapshot: np.ndarray
    preset: str
    seconds: float
    settings: dict = field(default_factory=dict)
    reused: int = 0
    #: scores of the oracle (the ``oracle`` stage: trained on the target's own labels) on ``target_eval``
    oracle: dict | None = None
    #: the session's data source (``synthetic`` twins or ``real``)
    data: str = "synthetic"
    #: the two-class task of the source model (chapter 6: the boundary)
    task: str = "boundary"

    @property
    def gap(self) -> GapScores | None:
        """No skill, source-only and oracle boundary Jaccard (a foreground task: its IoU) on the
        compared slices (None without an oracle)."""
        if self.oracle is None:
            return None
        key = headline_key(self.task)
        return GapScores(no_skill=no_skill(self.target_eval.labels, self.task),
                         source_only=float(self.source_only["target"][key]), oracle=float(self.oracle[key]))

    def of(self, name: str) -> list[MethodRun]:
        return [r for r in self.runs if r.name == name]

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(r.name for r in self.runs))


def compare(names: Sequence[str] | None, session: Session, *, seeds: Sequence[int] | None = None) -> Comparison:
    """Run every method (or variant) in ``names`` at every seed from M3; see the module docstring.

    Parameters
    ----------
    names : sequence of str or None
        Methods and variants (None: every registered method,
        :func:`~emseg_tutorial.adapt.registry.method_names`, ablations aside).
    session : Session
        Settings of :func:`emseg_tutorial.setup`; the run lengths come from
        ``session.preset.comparison`` (a :class:`~emseg_tutorial.presets.ComparisonSize`).
    seeds : sequence of int, optional
        Default ``range(preset.comparison.seeds)``. Deterministic methods run once.

    Notes
    -----
    Every (method, seed) run is one unit of the session's runs folder (:mod:`.runs`): a
    finished one is read back, an interrupted trained one continues from its last epoch, so a
    dropped session loses at most one epoch of one run. ``make book`` starts from an empty folder.
    """
    session = _session(session)
    for n in names or ():
        get_method(n)
    start = time.perf_counter()
    m3_stage = get_stage("m3", session)
    comp = compare_runs(names, session, m3_stage, domain_volumes(session), seeds=seeds, start=start)
    comp.oracle = oracle_scores(session, comp.target_eval)  # the oracle stage, on the same slices as every method
    comp.seconds = time.perf_counter() - start
    return comp


def domain_volumes(session: Session) -> dict[str, Volume]:
    """The four volumes of a comparison on the session's data: the source's train split
    (``source``) and test split (``source_val``), the target's train split (``target``, adapted
    to) and test split (``target_eval``, scored)."""
    return {"source": load_domain("fibsem", session, "train"), "target": load_domain("snemi", session, "train"),
            "source_val": load_domain("fibsem", session, "test"), "target_eval": load_domain("snemi", session, "test")}


def compare_runs(names: Sequence[str] | None, session: Session, source_stage, volumes: dict[str, Volume], *,
                 seeds: Sequence[int] | None = None, task: str = "boundary", start: float | None = None) -> Comparison:
    """Every method (or variant) of ``names`` at every seed, from one source model, on given volumes.

    The loop of :func:`compare` (chapter 6, from M3 on the twins), and of any other pair of
    domains with a two-class task (:mod:`.mito_benchmark`: a mitochondria model, VNC ->
    Lucchi++). ``source_stage`` is the trained source model (a
    :class:`~emseg_tutorial.train.TrainResult` of :func:`.stages.get_stage`, whose history's
    fingerprint keys the runs); ``volumes`` holds ``source`` (labels, and the image where a method
    reads it), ``target`` (its image is adapted to), ``source_val`` and ``target_eval`` (labels in
    the codes ``0..4``, scored in ``task``'s). The run lengths and seeds are the session's
    :class:`~emseg_tutorial.presets.ComparisonSize`; every (method, seed) run is a unit of the runs
    folder (:mod:`.runs`). The result has no oracle scores: the caller adds its own.
    """
    session = _session(session)
    preset, progress = session.preset, session.progress
    names = list(names or method_names())
    for n in names:
        get_method(n)
    size = preset.comparison
    c, eval_stride = size.adapt_settings(), size.eval_stride
    seeds = list(seeds if seeds is not None else range(size.seeds))
    start = time.perf_counter() if start is None else start
    model = source_stage.model
    source, target, source_val, target_eval = (volumes[k] for k in ("source", "target", "source_val", "target_eval"))
    if eval_stride > 1:
        target_eval = target_eval.take(slice(None, None, eval_stride))  # with the whole test volume's normaliser
    device = session.device
    stride = size.report_stride
    prior = source_reference(model, source_boundary_prior(for_task(source.labels, task)), device, source_val, stride)
    initial = epoch_report(model, target.image, prior, device, source_val, target_eval, stride,
                           normalizer=target.normalizer, task=task)
    z = target_eval.shape[0] // 2
    digests = volume_digests({"source": source, "target": target, "source_val": source_val,
                              "target_eval": target_eval})  # once, not per run
    runs, reused = [], 0
    for name in names:
        entry = get_method(name)
        overrides = dict(entry.overrides)
        for seed in ([None] if entry.deterministic else seeds[:1] if entry.variant_of else seeds):
            kwargs = method_settings(session, name, session.seed if seed is None else seed, **c, task=task)
            # each (method, seed) is its own unit in the runs folder: read back, continued or run
            fingerprint = adaptation_fingerprint(name, {**kwargs, **overrides}, model=source_stage.history["fingerprint"],
                                                 digests=digests, extra={"snapshot_slice": z})
            record = unit_path(session, name, seed, fingerprint, "run.pt")
            run = load_run(record, fingerprint)
            if run is not None:
                reused += 1
            else:
                state = unit_path(session, name, seed, fingerprint, "state.pt") if entry.trains else None
                resume = saved_state(state, f"{name} (seed {seed})") if state else None
                run = run_method(name, model, source, target.image, config_kwargs=kwargs, source_val=source_val,
                                 target_eval=target_eval, initial_report=initial, snapshot_slice=z,
                                 progress=progress, checkpoint=state, resume=resume,
                                 target_normalizer=target.normalizer)
                run.model = run.discriminator = None  # the tables need reports, not weights,
                run.snapshots = run.snapshots[-1:]  # and the figure the last epoch's snapshot only
                save_run(record, run, fingerprint)
                if state is not None:
                    state.unlink(missing_ok=True)
            runs.append(run)
    return Comparison(runs=runs, source_only=initial, snapshot_slice=z, target_eval=target_eval,
                      data=session.data, task=task,
                      source_only_snapshot=boundary_snapshot(model, target_eval.image, z, device,
                                                            normalizer=target_eval.normalizer), preset=preset.name,
                      seconds=time.perf_counter() - start,
                      settings={"seeds": seeds, "eval_stride": eval_stride, **c}, reused=reused)


def _mean_sd(values: list[float], deterministic: bool) -> str:
    if deterministic:
        return f"{values[0]:.3f} (deterministic)"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def scores_long(comp: Comparison, keys: Sequence[str] = SCORES) -> "pandas.DataFrame":
    """Every score (``keys``) of every run at the last, label-free and oracle epochs (one row each)."""
    import pandas as pd

    rows = []
    for r in comp.runs:
        for selection, epoch in (("last", r.last), ("label-free", r.label_free), ("oracle", r.oracle)):
            rows.append({"method": r.name, "seed": r.seed, "selection": selection, "epoch": epoch,
                         **{k: r.scores(epoch).get(k) for k in keys}})
    return pd.DataFrame(rows)


def comparison_table(comp: Comparison, selections: tuple[str, ...] = ("last", "label-free")) -> "pandas.DataFrame":
    """Mean ± sd over seeds of target boundary Jaccard, F1 and adapted Rand error.

    One row per method after a ``source only (M3)`` row; columns ``<score> (<selection>)``. The
    spread is over adaptation seeds from one source model (:func:`spread_note` says so in words).
    """
    import pandas as pd

    long = scores_long(comp)
    short = {"boundary_jaccard": "J", "boundary_f1": "F1", "adapted_rand_error": "ARAND"}
    rows = {"source only (M3)": {f"{short[k]} ({s})": f"{comp.source_only['target'][k]:.3f} (no adaptation)"
                                 for s in selections for k in SCORES}}
    for name in comp.names:
        det = get_method(name).deterministic
        sub = long[long["method"] == name]
        rows[name] = {f"{short[k]} ({s})": _mean_sd(sub[sub["selection"] == s][k].tolist(), det)
                      for s in selections for k in SCORES}
    table = pd.DataFrame(rows).T
    table.index.name = f"method (n = {len(comp.settings.get('seeds', []))} adaptation seeds, one M3)"
    return table


def selection_table(comp: Comparison) -> "pandas.DataFrame":
    """Per method: mean target Jaccard at the last, label-free and oracle epochs, and the epochs
    each rule picked (seed by seed)."""
    import pandas as pd

    long = scores_long(comp)
    rows = {}
    for name in comp.names:
        sub = long[long["method"] == name]
        row = {f"J ({s})": sub[sub["selection"] == s]["boundary_jaccard"].mean()
               for s in ("last", "label-free", "oracle")}
        row.update({f"epochs ({s})": ", ".join(str(e) for e in sub[sub["selection"] == s]["epoch"])
                    for s in ("label-free", "oracle")})
        rows[name] = row
    return pd.DataFrame(rows).T


def comparison_gap_table(comp: Comparison, selection: str = "label-free") -> "pandas.DataFrame":
    """Mean target boundary Jaccard of each method under ``selection`` between no skill,
    source-only and the oracle, with the fraction of the gap it closes (:func:`~.gap.gap_table`).

    Raises
    ------
    ValueError
        When the comparison has no oracle scores.
    """
    if comp.gap is None:
        raise ValueError("this comparison has no oracle scores (compare() computes them)")
    long = scores_long(comp)
    means = long[long["selection"] == selection].groupby("method", sort=False)["boundary_jaccard"].mean()
    return gap_table(comp.gap, {f"{name} ({selection})": float(means[name]) for name in comp.names})


def diagnostics_table(comp: Comparison) -> "pandas.DataFrame":
    """Label-free diagnostics of the last epoch, mean over seeds: what a user without labels sees."""
    import pandas as pd

    keys = {"target_boundary_fraction": "target boundary fraction", "target_entropy": "target entropy",
            "source_val_boundary_jaccard": "source val boundary J", "d_acc_real": "D acc real",
            "d_acc_fake": "D acc fake", "d_acc_target_hard": "D acc hardened target",
            "d_acc_fake_mismatch": "D acc wrong-slice pairs",
            "d_acc_fake_target": "D acc target pairs", "pseudo_fraction": "pseudo-labelled fraction"}
    rows = {"source only (M3)": {v: comp.source_only.get(k) for k, v in keys.items()}}
    for name in comp.names:
        last = [r.epochs[-1] for r in comp.of(name)]
        rows[name] = {v: (np.mean([e[k] for e in last]) if last[0].get(k) is not None else None)
                      for k, v in keys.items()}
    table = pd.DataFrame(rows).T.astype(float)
    return table.dropna(axis=1, how="all")


def epoch_curves(comp: Comparison, key: str = "boundary_jaccard") -> dict[str, np.ndarray]:
    """Target score per epoch, ``(seeds, epochs + 1)`` per method (epoch 0 = source only)."""
    return {name: np.array([[e["target"][key] for e in r.epochs] for r in comp.of(name)]) for name in comp.names}


def best_method(comp: Comparison, selection: str = "label-free", *, ablations: bool = False) -> tuple[str, float]:
    """The method with the highest mean target boundary Jaccard under ``selection``.

    The ablations (:func:`~emseg_tutorial.adapt.registry.ablation_names`) run with one seed to probe a
    mechanism, not to compete: they are left out unless ``ablations`` (or unless only ablations ran).
    """
    long = scores_long(comp)
    contenders = long[~long["method"].isin(list(ablation_names()))]
    long = contenders if len(contenders) and not ablations else long  # only ablations: rank them
    means = long[long["selection"] == selection].groupby("method")["boundary_jaccard"].mean()
    return str(means.idxmax()), float(means.max())


def spread_note(comp: Comparison) -> str:
    """What the ± and "every run" of this comparison cover, in one sentence (the table's caption).

    The seeds vary only the adaptation (discriminator initialisation, patch draws, jitter); every
    run starts from the same source model, trained once with one seed, so the spread says
    nothing about how a differently trained M3 would fare.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> spread_note(SimpleNamespace(settings={"seeds": [0, 1, 2]}, preset="cpu"))[:60]
    'Mean ± sample standard deviation over n = 3 adaptation seeds'
    """
    seeds = list(comp.settings.get("seeds", []))
    return (f"Mean ± sample standard deviation over n = {len(seeds)} adaptation seeds "
            f"({', '.join(str(s) for s in seeds)}) at the `{comp.preset}` preset, every run starting from the same "
            "source model M3 (trained once, with one seed): the ± covers the adaptation's own randomness "
            "(discriminator initialisation, patch draws), not the source model's training nor the choice of "
            "volumes. Deterministic methods run once; ablations run with the first seed only.")


#: :class:`AdaptConfig`'s defaults (its training choices; the sizes have none): chapter 5's ``lr_g``
_ADAPT_DEFAULTS = {f.name: f.default for f in fields(AdaptConfig)}


def comparison_numbers(comp: Comparison) -> dict[str, float | int | str]:
    """The numbers chapter 6's text quotes, as plain Python values (for ``myst_nb.glue``).

    ``preset``, ``n_seeds``, ``runs``, ``updates`` (U-Net updates per trained run), ``lr_ratio``
    (the comparison's U-Net learning rate over chapter 5's), ``source_j`` (M3 on the target),
    ``best_last`` / ``best_last_j`` and ``best_label_free`` / ``best_label_free_j`` (the best
    method's name and mean target Jaccard, the one-seed ablations aside: :func:`best_method`), ``<method>_j`` (mean last-epoch target Jaccard of
    every method that ran, ``-`` in names read as ``_``), ``label_free_kept`` (runs where the
    label-free rule kept M3), ``label_free_runs`` and ``oracle_gap`` (mean oracle-epoch minus
    label-free Jaccard); with the oracle model (:mod:`.gap`), ``oracle_model_j``, ``no_skill_j`` and
    ``best_last_closed`` / ``best_label_free_closed`` (the fraction of the gap the best method closes).
    """
    long = scores_long(comp)
    last = long[long["selection"] == "last"]
    lf = long[long["selection"] == "label-free"]
    oracle = long[long["selection"] == "oracle"]["boundary_jaccard"].to_numpy()
    s = comp.settings
    numbers = {"preset": comp.preset, "n_seeds": len(s.get("seeds", [])), "runs": len(comp.runs),
               "updates": int(s.get("epochs", 0) * s.get("steps_per_epoch", 0)),
               "lr_ratio": float(s["lr_g"] / _ADAPT_DEFAULTS["lr_g"]) if "lr_g" in s else 1.0,
               "source_j": float(comp.source_only["target"]["boundary_jaccard"]),
               "label_free_kept": int((lf["epoch"] == 0).sum()), "label_free_runs": int(len(lf)),
               "oracle_gap": float(np.mean(oracle - lf["boundary_jaccard"].to_numpy()))}
    for selection in ("last", "label-free"):
        name, value = best_method(comp, selection)
        key = selection.replace("-", "_")
        numbers[f"best_{key}"], numbers[f"best_{key}_j"] = name, float(value)
        if comp.gap is not None and comp.gap.closed(value) is not None:
            numbers[f"best_{key}_closed"] = float(comp.gap.closed(value))
    if comp.gap is not None:
        numbers.update(oracle_model_j=comp.gap.oracle, no_skill_j=comp.gap.no_skill)
    for name, value in last.groupby("method")["boundary_jaccard"].mean().items():
        numbers[f"{name.replace('-', '_')}_j"] = float(value)
    return numbers


def gap_line(gap: GapScores, name: str, value: float) -> str:
    """The best label-free method against source-only and the oracle model, in one sentence.

    Examples
    --------
    >>> gap_line(GapScores(0.1, 0.4, 0.8), "adabn", 0.5)
    "The oracle model, trained on the target's own labels, reaches 0.800 (no skill 0.100, source-only 0.400): the best label-free method, `adabn` at 0.500, closes 25% of that gap."
    """
    closed = gap.closed(value)
    head = (f"The oracle model, trained on the target's own labels, reaches {gap.oracle:.3f} (no skill "
            f"{gap.no_skill:.3f}, source-only {gap.source_only:.3f})")
    if closed is None:
        return head + ": the gap is too small to measure what adaptation closes."
    verb = f"closes {closed:.0%} of that gap" if closed >= 0 else f"ends {-closed:.0%} of the gap below source-only"
    return f"{head}: the best label-free method, `{name}` at {value:.3f}, {verb}."


def _verdict(values: list[float], reference: float) -> str:
    """'better in every run', 'worse in every run' or 'mixed' against ``reference``."""
    if all(v > reference for v in values):
        return "better than the source model in every run"
    if all(v < reference for v in values):
        return "worse than the source model in every run"
    return "on both sides of the source model across runs"


def findings(comp: Comparison) -> str:
    """What this comparison found, as Markdown sentences computed from its runs.

    The chapter shows this instead of hand-written claims, so the text always matches the
    numbers of the build it appears in.
    """
    base = comp.source_only["target"]["boundary_jaccard"]
    long = scores_long(comp)
    n_seeds = len(comp.settings.get("seeds", []))
    lines = [f"**Findings of this run** (`{comp.preset}` preset, source model target boundary Jaccard "
             f"{base:.3f}; \"every run\" and the spread are over {n_seeds} adaptation seeds from one M3):", ""]
    for name in comp.names:
        last = long[(long["method"] == name) & (long["selection"] == "last")]["boundary_jaccard"].tolist()
        verdict = ("deterministic, one run" if get_method(name).deterministic else
                   "one seed (an ablation)" if len(last) == 1 else _verdict(last, base))
        lines.append(f"* `{name}`: last epoch {np.mean(last):.3f} ({np.mean(last) - base:+.3f}), {verdict}.")
    for selection in ("last", "label-free"):
        name, value = best_method(comp, selection)
        if value > base:
            lines.append(f"* Best mean target Jaccard, {selection} (one-seed ablations aside): **`{name}`** at {value:.3f}.")
        else:
            lines.append(f"* Best mean target Jaccard, {selection}: no method (one-seed ablations aside) beats the "
                         "source model.")
    means = long[long["selection"] == "last"].groupby("method")["boundary_jaccard"]
    ranked = means.mean().sort_values(ascending=False)
    contenders = ranked.drop([n for n in ablation_names() if n in ranked.index])  # not the one-seed ablations
    if len(contenders) > 1:
        (first, a), (second, b) = list(contenders.items())[:2]
        sd = means.std(ddof=1).reindex([first, second]).dropna()
        if len(sd):
            within = "within" if a - b <= sd.max() else "beyond"
            lines.append(f"* Last epoch (one-seed ablations aside), `{first}` leads `{second}` by {a - b:.3f}, "
                         f"{within} the larger of their "
                         f"seed standard deviations ({sd.max():.3f}).")
    trained = [n for n in comp.names if get_method(n).trains and not get_method(n).variant_of]
    for one_pass in [n for n in comp.names if not get_method(n).trains and n in ranked.index]:
        better = [f"`{n}`" for n in trained if ranked[n] > ranked[one_pass]]
        lines.append(f"* Trained methods above `{one_pass}` ({ranked[one_pass]:.3f}, one pass, no gradient step) "
                     "at the last epoch: " + (", ".join(better) if better else "none") + ".")
    src0 = comp.source_only["source_val_boundary_jaccard"]
    kept_source = [n for n in comp.names if get_method(n).trains and not get_method(n).variant_of
                   and (get_method(n).defaults.get("source_weight") or 0) > 0]
    if kept_source and src0 is not None:
        moved = [f"`{n}` {np.mean([r.epochs[-1]['source_val_boundary_jaccard'] for r in comp.of(n)]):.3f}"
                 for n in kept_source]
        lines.append(f"* With the source loss kept, source validation Jaccard goes from {src0:.3f} (M3) to: "
                     + "; ".join(moved) + ".")
    lf = long[long["selection"] == "label-free"]
    kept = int((lf["epoch"] == 0).sum())
    oracle = long[long["selection"] == "oracle"]["boundary_jaccard"].to_numpy()
    gap = float(np.mean(oracle - lf["boundary_jaccard"].to_numpy()))
    against = (f"{gap:.3f} below the oracle" if gap >= 0 else
               f"{-gap:.3f} above the oracle (which picks among adapted epochs only, never M3)")
    lines.append(f"* The label-free rule kept the source model in {kept} of {len(lf)} runs; on average it "
                 f"scores {against}.")
    if comp.gap is not None:
        lines.append("* " + gap_line(comp.gap, *best_method(comp, "label-free")))
    shortcut = []
    for name in [n for n in comp.names if get_method(n).discriminator == "pairs"]:
        runs = comp.of(name)
        if runs:
            tgt = np.mean([r.epochs[-1]["d_acc_fake_target"] for r in runs])
            wrong = np.mean([r.epochs[-1]["d_acc_fake_mismatch"] for r in runs])
            judge = ("the domain shortcut: target pairs are the easier fakes" if tgt - wrong > DOMAIN_GAP else
                     "no sign of the domain shortcut")
            shortcut.append(f"`{name}` catches {tgt:.2f} of target pairs and {wrong:.2f} of wrong-slice pairs "
                            f"({judge})")
    if shortcut:
        lines.append(f"* Conditional discriminator, last epoch (catching target pairs more often than wrong-slice "
                     f"pairs by over {DOMAIN_GAP} reads as the domain shortcut): " + "; ".join(shortcut) + ".")
    hard = []
    for name in comp.names:
        last = [r.epochs[-1] for r in comp.of(name)]
        if last and last[0].get("d_acc_target_hard") is not None:
            key = "d_acc_fake_target" if last[0].get("d_acc_fake_target") is not None else "d_acc_fake"
            soft = np.mean([e[key] for e in last])  # conditional: target pairs only, as the hardened ones
            hardened = np.mean([e["d_acc_target_hard"] for e in last])
            hard.append(f"`{name}` {soft:.2f} / {hardened:.2f}")
    if hard:
        lines.append("* Hard-vs-soft probe, last epoch (share of target predictions the discriminator calls fake, "
                     "as trained on / after argmax; target pairs for the conditional methods; `paper-hard-fake` "
                     "trains on hard maps): " + "; ".join(hard) + ".")
    paper = comp.of("paper")
    if paper:
        src0 = comp.source_only["source_val_boundary_jaccard"]
        src1 = np.mean([r.epochs[-1]["source_val_boundary_jaccard"] for r in paper])
        frac = np.mean([r.epochs[-1]["target_boundary_fraction"] for r in paper])
        prior = comp.source_only["source_boundary_fraction"]
        band = boundary_band(frac, prior)
        walls = "its walls stay within the label-free band" if band == "within" else f"its walls {band}"
        lines.append(f"* `paper`: source validation Jaccard {src0:.3f} -> {src1:.3f}; predicted target boundary "
                     f"fraction {comp.source_only['target_boundary_fraction']:.3f} -> {frac:.3f} "
                     f"(M3 predicts {prior:.3f} on the source; {walls}, the band being a factor {PRIOR_FACTOR}).")
    lines.append("* " + provenance_note(comp.preset, comp.data))
    best, best_value = best_method(comp, "last")
    claims = [("Some method beats the source model on the target (mean over seeds, last epoch)", bool(best_value > base),
               f"best `{best}` {best_value:.3f}, source model {base:.3f}"),
              ("The label-free rule keeps an adapted checkpoint in some runs, not the source model in every one",
               kept < len(lf), f"source model kept in {kept} of {len(lf)} runs")]
    return with_small_preset_note("\n".join(lines), comp.preset, claims)
