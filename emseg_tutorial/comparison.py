"""Chapter 6: every adaptation method, several seeds, one honest table.

Each method starts from the same source model (M3 of :mod:`.experiments`) and adapts to the
same unlabelled target volume (the target's *train* split). The target's *test* split is
scored after every epoch with its labels; those scores feed the tables only. Two columns are
the main result: the **last** epoch, and the epoch kept by the **label-free** rule of
:mod:`.selection`. The **oracle** (best epoch by target Jaccard) is reported apart, as an
upper bound no user without labels can reach.

Methods (:data:`ALL_METHODS`): the trained ones of :mod:`.train.adapt_steps`, plus

* ``adabn``: the source model with batch-norm statistics re-estimated on the target
  (:mod:`.train.adabn`); deterministic, so one run stands for every seed;
* ``histmatch``: the source model applied to target volumes whose histogram was matched to the
  source's (:mod:`.data.histmatch`); no training, deterministic.

Variants add overrides to a method: ``conditional-raw`` is the conditional discriminator
without rank-normalised images (the domain shortcut left open). A variant is an ablation and
runs with the first seed only.

Examples
--------
>>> ALL_METHODS[-2:]
('adabn', 'histmatch')
>>> VARIANTS["conditional-raw"]
('conditional', {'condition_image': 'raw'})
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .data.histmatch import match_to_source
from .data.sources import load_domain
from .data.volume import Volume
from .devices import pick_device
from .experiments import adapt_config, get_stage
from .presets import Preset, get_preset
from .selection import label_free_choice, oracle_choice
from .train import METHODS, AdaptConfig, adapt, adapt_batchnorm
from .train.adversarial import boundary_snapshot, epoch_report, source_boundary_prior

ALL_METHODS: tuple[str, ...] = (*METHODS, "adabn", "histmatch")
DETERMINISTIC = ("adabn", "histmatch")
#: name -> (method, AdaptConfig overrides)
VARIANTS: dict[str, tuple[str, dict]] = {"conditional-raw": ("conditional", {"condition_image": "raw"})}
SCORES = ("boundary_jaccard", "boundary_f1", "adapted_rand_error")


@dataclass
class MethodRun:
    """One method at one seed: per-epoch reports, target snapshots and the adapted model."""

    name: str
    seed: int | None
    epochs: list[dict]
    snapshots: list[np.ndarray]
    seconds: float
    model: torch.nn.Module | None = None
    discriminator: torch.nn.Module | None = None

    @property
    def last(self) -> int:
        return self.epochs[-1]["epoch"]

    @property
    def label_free(self) -> int:
        return label_free_choice(self.epochs)

    @property
    def oracle(self) -> int:
        return oracle_choice(self.epochs)

    def scores(self, epoch: int) -> dict:
        return self.epochs[epoch]["target"]


@dataclass
class Comparison:
    """All runs of a comparison, the source-only report and what the pictures need."""

    runs: list[MethodRun]
    source_only: dict
    snapshot_slice: int
    target_eval: Volume
    source_only_snapshot: np.ndarray
    preset: str
    seconds: float
    settings: dict = field(default_factory=dict)

    def of(self, name: str) -> list[MethodRun]:
        return [r for r in self.runs if r.name == name]

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(r.name for r in self.runs))


def resolve(name: str) -> tuple[str, dict]:
    """``(method, overrides)`` of a method or variant name."""
    if name in VARIANTS:
        return VARIANTS[name]
    if name in ALL_METHODS:
        return name, {}
    raise ValueError(f"unknown method {name!r}; expected one of {list(ALL_METHODS) + list(VARIANTS)}")


def run_method(name: str, model: torch.nn.Module, source: Volume, target_image: np.ndarray, *,
               config_kwargs: dict, source_val: Volume | None = None, target_eval: Volume | None = None,
               initial_report: dict | None = None, snapshot_slice: int | None = None,
               progress: bool = True) -> MethodRun:
    """Adapt ``model`` with one method (or variant) and return its :class:`MethodRun`.

    ``config_kwargs`` are :class:`~emseg_tutorial.train.AdaptConfig` arguments (the variant's
    overrides win). ``adabn`` and ``histmatch`` ignore the training settings.
    """
    method, overrides = resolve(name)
    seed = config_kwargs.get("seed")
    start = time.perf_counter()
    if method in METHODS:
        cfg = {**config_kwargs, **overrides, "method": method}
        res = adapt(model, source.labels, target_image, AdaptConfig(**cfg), source_image=source.image,
                    source_val=source_val, target_eval=target_eval, snapshot_slice=snapshot_slice,
                    initial_report=initial_report, progress=progress)
        return MethodRun(name, seed, res.history["epochs"], res.snapshots, time.perf_counter() - start, res.model,
                         res.discriminator)

    device = pick_device(config_kwargs.get("device"))
    stride = config_kwargs.get("report_stride", 1)
    prior = source_boundary_prior(source.labels)
    if initial_report is None:
        initial_report = epoch_report(model, target_image, prior, device, source_val, target_eval, stride)
    eval_volume = target_eval
    if method == "adabn":
        adapted = adapt_batchnorm(model, target_image, device=device, progress=progress)
    else:  # histmatch: the model is unchanged, the target images are remapped
        adapted = model
        target_image = match_to_source(target_image, source.image)
        if target_eval is not None:
            eval_volume = Volume(match_to_source(target_eval.image, source.image), target_eval.labels,
                                 target_eval.voxel_size, f"{target_eval.name}-histmatched")
    report = epoch_report(adapted, target_image, prior, device, source_val, eval_volume, stride)
    snaps = []
    if eval_volume is not None:
        z = eval_volume.shape[0] // 2 if snapshot_slice is None else snapshot_slice
        snaps = [boundary_snapshot(model, target_eval.image, z, device),
                 boundary_snapshot(adapted, eval_volume.image, z, device)]
    epochs = [{"epoch": 0, **initial_report}, {"epoch": 1, **report}]
    return MethodRun(name, None, epochs, snaps, time.perf_counter() - start, adapted)


def compare(names: list[str] | None = None, preset: Preset | None = None, *, seeds: list[int] | None = None,
            progress: bool = True) -> Comparison:
    """Run every method (or variant) in ``names`` at every seed from M3; see the module docstring.

    Parameters
    ----------
    names : list of str, optional
        Methods and variants (default: :data:`ALL_METHODS`).
    preset : Preset, optional
        Sizes; the run lengths come from ``preset.comparison``.
    seeds : list of int, optional
        Default ``range(preset.comparison["seeds"])``. Deterministic methods run once.
    progress : bool
    """
    preset = preset or get_preset()
    names = list(names or ALL_METHODS)
    for n in names:
        resolve(n)
    c = dict(preset.comparison)
    n_seeds, eval_stride = c.pop("seeds"), c.pop("eval_stride", 1)
    seeds = list(seeds if seeds is not None else range(n_seeds))
    start = time.perf_counter()
    m3 = get_stage("m3", preset, progress=progress).model
    source = load_domain("fibsem", preset, "train")
    target = load_domain("snemi", preset, "train")
    source_val = load_domain("fibsem", preset, "test")
    target_eval = load_domain("snemi", preset, "test")
    if eval_stride > 1:
        target_eval = Volume(target_eval.image[::eval_stride], target_eval.labels[::eval_stride],
                             target_eval.voxel_size, f"{target_eval.name}[::{eval_stride}]")
    device = pick_device(None)
    prior = source_boundary_prior(source.labels)
    stride = c.get("report_stride", 1)
    initial = epoch_report(m3, target.image, prior, device, source_val, target_eval, stride)
    z = target_eval.shape[0] // 2
    runs = []
    for name in names:
        method = resolve(name)[0]
        for seed in ([None] if method in DETERMINISTIC else seeds[:1] if name in VARIANTS else seeds):
            kwargs = ({"report_stride": stride} if seed is None else
                      adapt_config(preset, method, seed, **c).to_dict())
            runs.append(run_method(name, m3, source, target.image, config_kwargs=kwargs, source_val=source_val,
                                   target_eval=target_eval, initial_report=initial, snapshot_slice=z,
                                   progress=progress))
            runs[-1].model = runs[-1].discriminator = None  # the tables need reports, not weights
    return Comparison(runs=runs, source_only=initial, snapshot_slice=z, target_eval=target_eval,
                      source_only_snapshot=boundary_snapshot(m3, target_eval.image, z, device), preset=preset.name,
                      seconds=time.perf_counter() - start,
                      settings={"seeds": seeds, "eval_stride": eval_stride, **c})


def _mean_sd(values: list[float], deterministic: bool) -> str:
    if deterministic:
        return f"{values[0]:.3f} (deterministic)"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def scores_long(comp: Comparison) -> "pandas.DataFrame":
    """Every score of every run at the last, label-free and oracle epochs (one row each)."""
    import pandas as pd

    rows = []
    for r in comp.runs:
        for selection, epoch in (("last", r.last), ("label-free", r.label_free), ("oracle", r.oracle)):
            rows.append({"method": r.name, "seed": r.seed, "selection": selection, "epoch": epoch,
                         **{k: r.scores(epoch)[k] for k in SCORES}})
    return pd.DataFrame(rows)


def comparison_table(comp: Comparison, selections: tuple[str, ...] = ("last", "label-free")) -> "pandas.DataFrame":
    """Mean ± sd over seeds of target boundary Jaccard, F1 and adapted Rand error.

    One row per method after a ``source only (M3)`` row; columns ``<score> (<selection>)``.
    """
    import pandas as pd

    long = scores_long(comp)
    short = {"boundary_jaccard": "J", "boundary_f1": "F1", "adapted_rand_error": "ARAND"}
    rows = {"source only (M3)": {f"{short[k]} ({s})": f"{comp.source_only['target'][k]:.3f} (no adaptation)"
                                 for s in selections for k in SCORES}}
    for name in comp.names:
        det = resolve(name)[0] in DETERMINISTIC
        sub = long[long["method"] == name]
        rows[name] = {f"{short[k]} ({s})": _mean_sd(sub[sub["selection"] == s][k].tolist(), det)
                      for s in selections for k in SCORES}
    table = pd.DataFrame(rows).T
    table.index.name = f"method (n = {len(comp.settings.get('seeds', []))} seeds)"
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


def diagnostics_table(comp: Comparison) -> "pandas.DataFrame":
    """Label-free diagnostics of the last epoch, mean over seeds: what a user without labels sees."""
    import pandas as pd

    keys = {"target_boundary_fraction": "target boundary fraction", "target_entropy": "target entropy",
            "source_val_boundary_jaccard": "source val boundary J", "d_acc_real": "D acc real",
            "d_acc_fake": "D acc fake", "d_acc_fake_mismatch": "D acc wrong-slice pairs",
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


def best_method(comp: Comparison, selection: str = "label-free") -> tuple[str, float]:
    """The method with the highest mean target boundary Jaccard under ``selection``."""
    long = scores_long(comp)
    means = long[long["selection"] == selection].groupby("method")["boundary_jaccard"].mean()
    return str(means.idxmax()), float(means.max())


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
    lines = [f"**Findings of this run** ({comp.preset} preset, source model target boundary Jaccard "
             f"{base:.3f}):", ""]
    for name in comp.names:
        last = long[(long["method"] == name) & (long["selection"] == "last")]["boundary_jaccard"].tolist()
        verdict = ("deterministic, one run" if resolve(name)[0] in DETERMINISTIC else
                   "one seed (an ablation)" if len(last) == 1 else _verdict(last, base))
        lines.append(f"* `{name}`: last epoch {np.mean(last):.3f} ({np.mean(last) - base:+.3f}), {verdict}.")
    for selection in ("last", "label-free"):
        name, value = best_method(comp, selection)
        if value > base:
            lines.append(f"* Best mean target Jaccard, {selection}: **`{name}`** at {value:.3f}.")
        else:
            lines.append(f"* Best mean target Jaccard, {selection}: no method beats the source model.")
    lf = long[long["selection"] == "label-free"]
    kept = int((lf["epoch"] == 0).sum())
    oracle = long[long["selection"] == "oracle"]["boundary_jaccard"].to_numpy()
    lines.append(f"* The label-free rule kept the source model in {kept} of {len(lf)} runs; on average it "
                 f"scores {np.mean(oracle - lf['boundary_jaccard'].to_numpy()):.3f} below the oracle.")
    shortcut = []
    for name in ("conditional", "conditional-raw"):
        runs = comp.of(name)
        if runs:
            tgt = np.mean([r.epochs[-1]["d_acc_fake_target"] for r in runs])
            wrong = np.mean([r.epochs[-1]["d_acc_fake_mismatch"] for r in runs])
            shortcut.append(f"`{name}` catches {tgt:.2f} of target pairs and {wrong:.2f} of wrong-slice pairs")
    if shortcut:
        lines.append("* Conditional discriminator, last epoch: " + "; ".join(shortcut) + ".")
    paper = comp.of("paper")
    if paper:
        src0 = comp.source_only["source_val_boundary_jaccard"]
        src1 = np.mean([r.epochs[-1]["source_val_boundary_jaccard"] for r in paper])
        frac = np.mean([r.epochs[-1]["target_boundary_fraction"] for r in paper])
        lines.append(f"* `paper`: source validation Jaccard {src0:.3f} -> {src1:.3f}; predicted target boundary "
                     f"fraction {comp.source_only['target_boundary_fraction']:.3f} -> {frac:.3f} "
                     f"(source labels: {comp.source_only['source_boundary_fraction']:.3f}).")
    return "\n".join(lines)
