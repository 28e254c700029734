"""The domain gap in numbers: no skill, source-only, the oracle, and the fraction of the gap closed.

Every adaptation result of chapters 5 and 6 is read against two references on the same held-out
target slices:

* **source-only**: M3 (trained on the source) applied to the target unchanged;
* **oracle**: the same U-Net and recipe trained on the *target's* own labels (its train split;
  the ``oracle`` stage of :mod:`.stages`), what a model could reach had the target been labelled.

A method's gain is then printed as the **fraction of the gap closed**,
``(score - source_only) / (oracle - source_only)``: 0 is no better than source-only, 1 reaches the
oracle, a negative value is worse than not adapting. **No skill** is the best score of a constant
answer (every labelled pixel called boundary: the boundary Jaccard is then the share of boundary
pixels), the floor against which the twins' domain gap is calibrated
(:mod:`emseg_tutorial.data.synthetic`: source-only at most the midpoint between no skill and the
oracle).

Examples
--------
>>> gap = GapScores(no_skill=0.10, source_only=0.40, oracle=0.80)
>>> round(gap.closed(0.60), 3), gap.midpoint, gap.source_only_is_poor
(0.5, 0.45, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.sources import load_domain
from ..data.volume import Volume
from ..labels import BOUNDARY, for_task
from ..session import Session
from .scores import score
from .stages import _session, get_stage, run_adaptation

#: A gap smaller than this (oracle - source-only, in the score's units) is too small to divide by.
MIN_GAP = 0.01


def no_skill(labels: np.ndarray, task: str = "boundary") -> float:
    """Boundary Jaccard of the best constant answer: every labelled pixel called boundary (for
    another one-vs-rest task: called its class, a foreground IoU).

    That Jaccard is the share of the class among the labelled pixels (calling every pixel the
    rest scores 0).

    Examples
    --------
    >>> no_skill(np.array([[1, 2, 2, 0], [2, 1, 2, 2]]))
    0.2857142857142857
    >>> no_skill(np.array([[1, 3, 2, 0]]), "mitochondria")
    0.3333333333333333
    """
    codes = for_task(np.asarray(labels), task)
    labelled = codes > 0
    return float((codes[labelled] == BOUNDARY).mean()) if labelled.any() else float("nan")


def gap_closed(value: float, source_only: float, oracle: float) -> float | None:
    """``(value - source_only) / (oracle - source_only)``; None when the gap is below :data:`MIN_GAP`.

    Examples
    --------
    >>> round(gap_closed(0.5, 0.4, 0.8), 3)
    0.25
    >>> gap_closed(0.5, 0.4, 0.405) is None
    True
    """
    gap = oracle - source_only
    return None if not gap >= MIN_GAP else float((value - source_only) / gap)


@dataclass(frozen=True)
class GapScores:
    """No skill, source-only and oracle scores of one held-out target volume (boundary Jaccard)."""

    no_skill: float
    source_only: float
    oracle: float

    @property
    def midpoint(self) -> float:
        """Halfway between no skill and the oracle."""
        return (self.no_skill + self.oracle) / 2

    @property
    def source_only_is_poor(self) -> bool:
        """Whether source-only transfer is at most the midpoint (what the twins are calibrated to)."""
        return self.source_only <= self.midpoint

    def closed(self, value: float) -> float | None:
        """The fraction of the gap ``value`` closes (:func:`gap_closed`)."""
        return gap_closed(value, self.source_only, self.oracle)

    def sentence(self, preset: str) -> str:
        """One Markdown sentence with the three numbers and what they mean."""
        where = "at most" if self.source_only_is_poor else "above"
        return (f"On the held-out target (`{preset}` preset): no skill {self.no_skill:.3f}, source-only (M3) "
                f"{self.source_only:.3f}, oracle (trained on the target's own labels) {self.oracle:.3f}. Source-only "
                f"is {where} the midpoint {self.midpoint:.3f}; the gap adaptation could close is "
                f"{self.oracle - self.source_only:.3f} boundary Jaccard.")


def oracle_scores(session: Session, volume: Volume | None = None) -> dict:
    """Scores (:func:`~.scores.score`, boundary task) of the oracle stage on ``volume``
    (default: the target's test split), on the session's device."""
    session = _session(session)
    volume = volume if volume is not None else load_domain("snemi", session, "test")
    return score(get_stage("oracle", session).model, volume, "boundary", device=session.device)


def domain_gap(session: Session, volume: Volume | None = None, *, source_only: dict | None = None,
               key: str = "boundary_jaccard") -> GapScores:
    """:class:`GapScores` of the session's twins (or real data) on ``volume`` (default: the
    target's test split): M3 and the oracle stage (trained here if the runs folder lacks them).

    ``source_only`` is M3's scores on ``volume`` when the caller has them (chapter 6's
    source-only report), else computed here.
    """
    session = _session(session)
    volume = volume if volume is not None else load_domain("snemi", session, "test")
    m3 = source_only if source_only is not None else score(get_stage("m3", session).model, volume, "boundary",
                                                           device=session.device)
    return GapScores(no_skill=no_skill(volume.labels), source_only=float(m3[key]),
                     oracle=float(oracle_scores(session, volume)[key]))


def gap_table(gap: GapScores, methods: dict[str, float], *, label: str = "boundary Jaccard") -> "pandas.DataFrame":
    """One row each for no skill, source-only, every method of ``methods`` (name -> score on the
    same held-out slices) and the oracle, with the fraction of the gap each closes.

    Examples
    --------
    >>> table = gap_table(GapScores(0.1, 0.4, 0.8), {"paper (last epoch)": 0.5})
    >>> table["gap closed"].round(2).tolist()
    [nan, 0.0, 0.25, 1.0]
    """
    import pandas as pd

    rows = {"no skill (all boundary)": (gap.no_skill, None), "source-only (M3)": (gap.source_only, gap.closed(gap.source_only)),
            **{name: (value, gap.closed(value)) for name, value in methods.items()},
            "oracle model (target labels)": (gap.oracle, gap.closed(gap.oracle))}
    table = pd.DataFrame({label: [v for v, _ in rows.values()],
                          "gap closed": [float("nan") if c is None else c for _, c in rows.values()]}, index=list(rows))
    return table


def provenance_note(preset: str, data: str) -> str:
    """Where a chapter's ranking comes from, in one Markdown sentence (its findings end with it).

    Examples
    --------
    >>> provenance_note("cpu", "synthetic")[:64]
    'This ranking comes from the synthetic twins at the `cpu` preset;'
    """
    if data == "real":
        return (f"This ranking comes from the real EM volumes at the `{preset}` preset (one source model, the seeds "
                "above); other volumes or presets may order the methods differently.")
    return (f"This ranking comes from the synthetic twins at the `{preset}` preset; the twins are calibrated to a "
            "realistic domain gap but are not real EM, so check it on real data with the command below "
            "(`EMSEG_DATA=real`, a GPU advised).")


@dataclass
class GapPreview:
    """Chapter 1's picture of the domain gap: one held-out target slice, its boundary labels, and
    the boundary probability of source-only (M3), adapted (chapter 5's run, last epoch) and the
    oracle model, with their boundary Jaccard on the whole held-out volume."""

    image: np.ndarray
    labels: np.ndarray
    probabilities: dict[str, np.ndarray]
    scores: dict[str, float]
    gap: GapScores
    slice: int = 0
    preset: str = ""


def gap_preview(session: Session) -> GapPreview:
    """Source-only, adapted and oracle on one held-out target slice (:class:`GapPreview`).

    Trains (or reads back from the runs folder) M3, chapter 5's adaptation with the paper's method
    and the oracle model, so the later chapters reuse them.
    """
    from ..adapt.diagnostics import boundary_snapshot

    session = _session(session)
    target = load_domain("snemi", session, "test")
    run = run_adaptation(session, "paper")
    epochs = run.history["epochs"]
    z = int(run.history["snapshot_slice"])
    oracle_model = get_stage("oracle", session).model
    oracle = score(oracle_model, target, "boundary", device=session.device)
    gap = GapScores(no_skill=no_skill(target.labels), source_only=float(epochs[0]["target"]["boundary_jaccard"]),
                    oracle=float(oracle["boundary_jaccard"]))
    probs = {"source-only (M3)": run.snapshots[0], "adapted (paper, last epoch)": run.snapshots[-1],
             "oracle (target labels)": boundary_snapshot(oracle_model, target.image, z, session.device,
                                                         normalizer=target.normalizer)}
    scores = dict(zip(probs, (gap.source_only, float(epochs[-1]["target"]["boundary_jaccard"]), gap.oracle)))
    return GapPreview(image=target.image[z], labels=for_task(target.labels[z], "boundary"), probabilities=probs,
                      scores=scores, gap=gap, slice=z, preset=session.preset.name)
