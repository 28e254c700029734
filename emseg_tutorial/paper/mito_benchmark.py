"""The field's benchmark: VNC -> Lucchi++ mitochondria, this library's methods beside the published rows.

The EM domain-adaptation literature measures itself on mitochondria, and its standard pair is
VNC (Drosophila ssTEM, the source) -> Lucchi / Lucchi++ (mouse hippocampus FIB-SEM, the
target). :func:`run_benchmark` runs that pair with the methods of :mod:`emseg_tutorial.adapt`
and the comparison loop of chapter 6 (:func:`~.comparison.compare_runs`):

1. the **source model**: a U-Net for ``mitochondria`` against the rest (stage ``mito_source`` of
   :mod:`.stages`) trained on VNC's train split;
2. every method adapts it to the Lucchi++ *train* volume without its labels, at every seed
   (the preset's :class:`~emseg_tutorial.presets.ComparisonSize`), and the Lucchi++ *test*
   volume is scored after every epoch (those labels score, nothing reads them to train or choose);
3. the **oracle**: the same recipe trained on the Lucchi++ train labels (stage ``mito_oracle``);
4. one table (:func:`benchmark_table`): source-only, each method at its last epoch and at the
   label-free choice (mean ± sd over seeds), the oracle, the fraction of the gap each closes
   (:func:`~.gap.gap_closed`, on foreground IoU), then the published rows (:data:`PUBLISHED`)
   with their source and how their checkpoint was selected.

``data="synthetic"`` (the session's, or ``--data``) runs the same on the twins: the FIBSEM twin
as source, the SNEMI3D twin as target, both with mitochondria (code 3), so the pair runs offline
and in CI; ``"real"`` reads the registry's ``vnc`` and ``lucchi_pp`` downloads
(:func:`~emseg_tutorial.data.real.load_vnc_lucchi`; without them, one line says which files to
place where).

Why the published rows are not strictly comparable with ours: other splits (DA-ISC adapts to one
Lucchi volume and tests on the other, its "subset 2" the other way round; ours crops both volumes
to the preset), the original Lucchi annotations where we read Lucchi++'s, 2D against 3D networks
(PyTorch Connectomics' reference is a 3D residual U-Net), and selection: DA-ISC keeps the
checkpoint that scores best on the labelled target volume it reports (its configs'
``if_valid: True``), PyTorch Connectomics the best of its thresholds and filters on the test
volume, where our label-free rows never read a target label.

Examples
--------
>>> [row.method for row in PUBLISHED]
['DA-ISC, subset 1', 'DA-ISC, subset 2', 'PyTorch Connectomics (in-domain)']
>>> PUBLISHED[0].scores["foreground_iou"]
0.6865
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..adapt.registry import get_method
from ..data.real import load_vnc_lucchi
from ..data.volume import Volume
from ..session import Session
from .comparison import Comparison, compare_runs, domain_volumes, scores_long
from .gap import gap_closed
from .scores import score
from .stages import _session, get_stage

#: The pair's name (``benchmark vnc-lucchi``) and its task.
PAIR, TASK = "vnc-lucchi", "mitochondria"
#: The field's scores, in the published tables' order, and their short names.
SCORES = ("foreground_iou", "foreground_f1", "foreground_mcc", "foreground_ap")
SHORT = {"foreground_iou": "IoU", "foreground_f1": "F1", "foreground_mcc": "MCC", "foreground_ap": "AP"}
#: Methods run when none are named: every registered method the field also uses, and the paper's.
DEFAULT_METHODS = ("adabn", "histmatch", "adaptsegnet", "advent", "selftrain", "paper")


@dataclass(frozen=True)
class PublishedRow:
    """One published result, with where it is printed and how its checkpoint was chosen.

    ``scores`` are fractions (keys of :data:`SCORES`; a table's x 100 divided back); ``ref``
    is the footnote key of :data:`REFERENCES`.
    """

    method: str
    setting: str
    scores: Mapping[str, float]
    selection: str
    model: str
    ref: str


#: Where each published row is printed, exactly (repository, file, commit).
REFERENCES: dict[str, str] = {
    "DA-ISC": ("W. Huang et al., Domain adaptive mitochondria segmentation via enforcing inter-section consistency, "
               "MICCAI 2022; github.com/weih527/DA-ISC, inference/vnc2lucchi1/scores.txt and "
               "inference/vnc2lucchi2/scores.txt, selection in scripts/config/vnc2lucchi{1,2}.yaml (commit 0a7609a)"),
    "PyTC": ("PyTorch Connectomics, BENCHMARK.md, 'Lucchi Mitochondria Segmentation' (github.com/zudi-lin/"
             "pytorch_connectomics, commit 85f09ee); model configs/Lucchi-Mitochondria.yaml (unet_residual_3d)"),
}

#: The published rows printed beside ours: only those the references above print exactly.
PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("DA-ISC, subset 1", "VNC III -> Lucchi: adapt to the train volume, test on the test volume",
                 {"foreground_ap": 0.8948, "foreground_f1": 0.8129, "foreground_mcc": 0.8053, "foreground_iou": 0.6865},
                 "best checkpoint on the test labels", "2D, adapted", "DA-ISC"),
    PublishedRow("DA-ISC, subset 2", "VNC III -> Lucchi: adapt to the test volume, test on the train volume",
                 {"foreground_ap": 0.9244, "foreground_f1": 0.8518, "foreground_mcc": 0.8448, "foreground_iou": 0.7431},
                 "best checkpoint on the scored labels", "2D, adapted", "DA-ISC"),
    PublishedRow("PyTorch Connectomics (in-domain)", "Lucchi train labels -> Lucchi test volume (165 x 1024 x 768)",
                 {"foreground_iou": 0.8918}, "best threshold and filter on test",
                 "3D U-Net, target labels", "PyTC"),
)


@dataclass
class Benchmark:
    """A run of the benchmark: the comparison of the methods (runs, source-only report, oracle
    scores, settings) and what produced it."""

    comparison: Comparison
    data: str
    preset: str
    seconds: float
    volumes: dict[str, str] = field(default_factory=dict)
    methods: tuple[str, ...] = ()

    @property
    def source_only(self) -> dict:
        return self.comparison.source_only["target"]

    @property
    def oracle(self) -> dict:
        return self.comparison.oracle


def benchmark_volumes(session: Session) -> dict[str, Volume]:
    """``source``, ``source_val``, ``target`` and ``target_eval`` of the pair on the session's data:
    VNC and Lucchi++ (:func:`~emseg_tutorial.data.real.load_vnc_lucchi`) when ``real``, else the
    twins (:func:`~.comparison.domain_volumes`: FIBSEM twin -> SNEMI3D twin, both with mitochondria)."""
    session = _session(session)
    if session.data == "real":
        return load_vnc_lucchi(session.preset, cache=session.cache, progress=session.progress)
    return domain_volumes(session)


def run_benchmark(session: Session, *, methods: Sequence[str] | None = None,
                  seeds: int | Sequence[int] | None = None) -> Benchmark:
    """Run the VNC -> Lucchi++ benchmark (see the module docstring) at the session's preset.

    Parameters
    ----------
    session : Session
        Its ``data`` picks twins or the downloads, its preset the sizes, its runs folder keeps the
        models and runs (read back when nothing changed).
    methods : sequence of str, optional
        Registered methods or variants (default :data:`DEFAULT_METHODS`); checked before any work.
    seeds : int or sequence of int, optional
        Adaptation seeds (an int ``n``: ``0..n-1``; default: the preset's comparison seeds).
        Deterministic methods run once.
    """
    session = _session(session)
    methods = tuple(methods or DEFAULT_METHODS)
    for name in methods:
        get_method(name)  # an unknown method: one line, before any work
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {seeds}")
        seeds = range(int(seeds))
    start = time.perf_counter()
    volumes = benchmark_volumes(session)
    source = get_stage("mito_source", session, source=volumes["source"])
    oracle = get_stage("mito_oracle", session, source=volumes["target"])
    comp = compare_runs(methods, session, source, volumes, seeds=None if seeds is None else list(seeds), task=TASK,
                        start=start)
    comp.oracle = score(oracle.model, comp.target_eval, TASK, device=session.device)
    described = {key: f"{vol.name} {vol.shape}" for key, vol in volumes.items()}
    return Benchmark(comparison=comp, data=session.data, preset=session.preset.name,
                     seconds=time.perf_counter() - start, volumes=described, methods=methods)


# --------------------------------------------------------------------------- the table


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values present (``None`` and NaN skipped, so one failed run does not make
    the row NaN); ``None`` when none is.

    Examples
    --------
    >>> round(_mean([0.5, None, float("nan"), 0.7]), 6)
    0.6
    >>> _mean([None, float("nan")]) is None
    True
    """
    present = np.array([np.nan if v is None else v for v in values], dtype=float)
    return float(np.nanmean(present)) if not np.isnan(present).all() else None


def _ours(bench: Benchmark) -> list[dict]:
    """Our rows: source-only, each method at its last and label-free epochs, the oracle."""
    comp, gap = bench.comparison, bench.comparison.gap
    long = scores_long(comp, SCORES)
    source = "source-only (VNC model)" if bench.data == "real" else "source-only (FIBSEM-twin model)"
    rows = [{"row": source, **{k: bench.source_only[k] for k in SCORES}, "n": 1, "selection": "-",
             "gap closed": gap.closed(bench.source_only["foreground_iou"])}]
    for name in comp.names:
        deterministic = get_method(name).deterministic
        for selection, rule in (("last", "last epoch"), ("label-free", "label-free rule")):
            sub = long[(long["method"] == name) & (long["selection"] == selection)]
            means = {k: _mean(sub[k]) for k in SCORES}
            rows.append({"row": f"{name}, {selection}", **means, "n": len(sub), "selection": rule,
                         "values": {k: sub[k].tolist() for k in SCORES}, "deterministic": deterministic,
                         "epochs": sub["epoch"].tolist(),
                         "gap closed": None if means["foreground_iou"] is None else gap.closed(means["foreground_iou"])})
    target = "Lucchi++ train labels" if bench.data == "real" else "target twin's train labels"
    rows.append({"row": f"oracle ({target})", **{k: bench.oracle.get(k) for k in SCORES}, "n": 1,
                 "selection": "last step",
                 "gap closed": gap.closed(bench.oracle["foreground_iou"])})
    return rows


def _cell(row: dict, key: str, digits: int = 3) -> str:
    """A score as the table prints it: ``mean ± sd`` over several runs, else the value; ``n/a``."""
    values = [v for v in row.get("values", {}).get(key, [row.get(key)]) if v is not None and not np.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1 or row.get("deterministic"):
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def benchmark_table(bench: Benchmark) -> "pandas.DataFrame":
    """One table: our rows (scores on the held-out target; mean ± sample sd over the ``n`` runs,
    one per seed), the fraction of the gap each closes (foreground IoU, :func:`~.gap.gap_closed`;
    ``n/a`` where the oracle is not at least 0.01 above source-only), then the published rows
    (:data:`PUBLISHED`) with how they were selected and their footnote (:func:`references_note`).
    """
    import pandas as pd

    rows = {}
    for row in _ours(bench):
        rows[row["row"]] = {**{SHORT[k]: _cell(row, k) for k in SCORES}, "n": row["n"],
                            "gap closed": "n/a" if row["gap closed"] is None else f"{row['gap closed']:.2f}",
                            "selection": row["selection"], "source": "this run"}
    for pub in PUBLISHED:
        rows[f"{pub.method} [published]"] = {**{SHORT[k]: _cell(dict(pub.scores), k, 4) for k in SCORES}, "n": "",
                                             "gap closed": "-", "selection": pub.selection,
                                             "source": f"[{pub.ref}] {pub.model}"}
    table = pd.DataFrame(rows).T
    table.index.name = f"{PAIR}, {TASK}"
    return table


def references_note() -> str:
    """The published rows' sources, one line each (the table's footnotes).

    Examples
    --------
    >>> references_note().splitlines()[0][:9]
    '[DA-ISC] '
    """
    return "\n".join(f"[{key}] {text}" for key, text in REFERENCES.items())


def benchmark_text(bench: Benchmark) -> str:
    """What ``benchmark vnc-lucchi`` prints: a heading, the table, its footnotes."""
    import pandas as pd

    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        table = benchmark_table(bench).to_string()
    seeds = bench.comparison.settings.get("seeds", [])
    head = (f"{PAIR} benchmark: task {TASK}, data {bench.data}, preset {bench.preset}, {len(seeds)} seeds, "
            f"{bench.seconds:.0f} s; adapted to {bench.volumes.get('target')}, scored on "
            f"{bench.volumes.get('target_eval')} (its labels read by no method)")
    return "\n".join([head, table, "", references_note()])


def benchmark_json(bench: Benchmark) -> dict:
    """The run as plain data: settings, every run's scores at its last and label-free epochs, the
    source-only and oracle scores, our rows and the published ones (``benchmark --out``)."""
    comp = bench.comparison
    runs = [{"method": r.name, "seed": r.seed, "last_epoch": r.last, "label_free_epoch": r.label_free,
             "last": r.scores(r.last), "label_free": r.scores(r.label_free), "seconds": r.seconds} for r in comp.runs]
    ours = [{k: v for k, v in row.items() if k not in ("values", "deterministic")} for row in _ours(bench)]
    return {"pair": PAIR, "task": TASK, "data": bench.data, "preset": bench.preset, "seconds": bench.seconds,
            "volumes": bench.volumes, "methods": list(bench.methods), "settings": comp.settings,
            "source_only": bench.source_only, "oracle": bench.oracle, "runs": runs, "rows": ours,
            "published": [{"method": p.method, "setting": p.setting, "scores": dict(p.scores),
                           "selection": p.selection, "model": p.model, "reference": REFERENCES[p.ref]}
                          for p in PUBLISHED]}


def benchmark_numbers(bench: Benchmark) -> dict[str, float | str]:
    """The numbers a chapter's prose quotes (``myst_nb.glue``): ``preset``, ``data``, ``seconds``,
    ``source_iou``, ``oracle_iou``, ``top_on_labels`` / ``top_on_labels_iou`` /
    ``top_on_labels_closed`` and ``daisc1_iou``, ``pytc_iou`` (the published references).

    ``top_on_labels`` is the method whose label-free epoch scores the highest mean IoU on the
    held-out target labels: picking it reads those labels, so it is an oracle-style choice, shown
    for comparison only (no label-free rule picks among the methods)."""
    rows = [r for r in _ours(bench) if r["row"].endswith(", label-free") and r["foreground_iou"] is not None]
    top = max(rows, key=lambda r: r["foreground_iou"])
    numbers = {"preset": bench.preset, "data": bench.data, "seconds": float(bench.seconds),
               "source_iou": float(bench.source_only["foreground_iou"]),
               "oracle_iou": float(bench.oracle["foreground_iou"]),
               "top_on_labels": top["row"].rsplit(",", 1)[0], "top_on_labels_iou": float(top["foreground_iou"]),
               "daisc1_iou": PUBLISHED[0].scores["foreground_iou"], "pytc_iou": PUBLISHED[2].scores["foreground_iou"]}
    closed = gap_closed(top["foreground_iou"], numbers["source_iou"], numbers["oracle_iou"])
    numbers["top_on_labels_closed"] = float("nan") if closed is None else float(closed)
    return numbers
