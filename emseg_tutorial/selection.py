"""Which adapted model to keep: a rule that reads no target labels, and the oracle that does.

Without target labels nobody can compute the target Jaccard of a checkpoint, so "the best
epoch" is not available to a user; picking it with the labels and reporting its score
overstates what a method delivers. :func:`label_free_choice` uses only what a user has:

1. **Source sanity.** The source validation boundary Jaccard may fall at most
   ``max_source_drop`` below the model's before adaptation: a model that forgot the source
   is rejected whatever it does on the target.
2. **No collapse.** The fraction of target pixels predicted as boundary must stay within a
   factor ``prior_factor`` of the source's boundary fraction: a model that predicts almost no
   walls (or walls everywhere) is rejected. The factor is loose because the target's real
   boundary fraction is unknown (anisotropic sections have wider walls).
3. **Confidence.** Among the checkpoints that pass, keep the one with the lowest mean
   prediction entropy on the target (confident predictions, as in entropy-based selection).
4. If none passes, keep the model from before adaptation (epoch 0): the rule refuses to adapt.

The thresholds were fixed before any target score was looked at; the rule is applied the
same way to every method. It is a heuristic, and chapter 6 reports where it picks well or
badly next to the oracle (the epoch with the best target Jaccard, picked with the labels).

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
"""

from __future__ import annotations

MAX_SOURCE_DROP = 0.05
PRIOR_FACTOR = 1.5


def passes(report: dict, before: dict, *, max_source_drop: float = MAX_SOURCE_DROP,
           prior_factor: float = PRIOR_FACTOR) -> bool:
    """Whether one checkpoint's label-free diagnostics pass checks 1 and 2 (see module docstring)."""
    src, src0 = report.get("source_val_boundary_jaccard"), before.get("source_val_boundary_jaccard")
    if src is not None and src0 is not None and src < src0 - max_source_drop:
        return False
    prior = report["source_boundary_fraction"]
    if prior <= 0:
        return True
    ratio = report["target_boundary_fraction"] / prior
    return 1 / prior_factor <= ratio <= prior_factor


def label_free_choice(epochs: list[dict], *, max_source_drop: float = MAX_SOURCE_DROP,
                      prior_factor: float = PRIOR_FACTOR) -> int:
    """The epoch kept without target labels (0: adaptation rejected).

    Parameters
    ----------
    epochs : list of dict
        Per-epoch reports of an adaptation run (``history["epochs"]``), epoch 0 first. Only the
        keys ``epoch``, ``source_val_boundary_jaccard``, ``target_boundary_fraction``,
        ``source_boundary_fraction`` and ``target_entropy`` are read; never ``target``.
    max_source_drop, prior_factor : float
        Thresholds of checks 1 and 2.
    """
    if not epochs:
        raise ValueError("no epochs to choose from")
    before = epochs[0]
    kept = [e for e in epochs[1:] if passes(e, before, max_source_drop=max_source_drop, prior_factor=prior_factor)]
    return min(kept, key=lambda e: e["target_entropy"])["epoch"] if kept else before["epoch"]


def oracle_choice(epochs: list[dict], key: str = "boundary_jaccard") -> int:
    """The adapted epoch (>= 1) with the best target score: needs the target labels.

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
    return max(adapted, key=lambda e: e["target"][key])["epoch"]
