"""Checks for the exercises of chapter 6: wrong-slice partners, and choosing a model without labels.

Examples
--------
>>> def partners(z, depth, gap, rng):  # an answer to exercise 6.1
...     below, above = np.maximum(z - gap + 1, 0), np.maximum(depth - z - gap, 0)
...     u = np.floor(rng.random(z.shape) * (below + above)).astype(int)
...     return np.where(u < below, u, z + gap + (u - below))
>>> bool(check_distant_slices(partners))
✓ wrong-slice partners: ...
True
>>> from emseg_tutorial.adapt.diagnostics import label_free_choice
>>> bool(check_label_free_choice(label_free_choice))
✓ label-free model selection: ...
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..data.patches import distant_slices
from ..adapt.diagnostics import label_free_choice
from ._compare import call, fail, require_function
from ._misreadings import CHOICE_MISREADINGS, choice_read_as, narrow
from .checks import exercise_check

__all__ = ["check_distant_slices", "check_label_free_choice"]

_GAP_CASES = [(10, 4), (48, 8), (7, 3), (6, 1)]


@exercise_check("wrong-slice partners")
def check_distant_slices(func: Callable[[np.ndarray, int, int, np.random.Generator], np.ndarray]) -> str:
    """Check ``func(z, depth, gap, rng) -> partners``: every partner at least ``gap`` slices
    from its slice, inside the volume, and every allowed partner drawn (no side left out).

    The library's draw is :func:`emseg_tutorial.data.patches.distant_slices` (in torch, on the
    sampler's device).
    """
    require_function(func)
    for depth, gap in _GAP_CASES:
        draws = 60 * depth  # enough that a uniform draw misses an allowed partner with p < 1e-20
        z = np.repeat(np.arange(depth), draws)
        got = call(func, z.copy(), depth, gap, np.random.default_rng(0))
        got = np.asarray(got)
        if got.shape != z.shape:
            fail(f"for {z.size} slice indices (depth {depth}, gap {gap}) expected {z.size} partners, "
                 f"got shape {got.shape}. Return one partner per entry of z.")
        if not np.issubdtype(got.dtype, np.integer):
            fail(f"partners must be integer slice indices, got dtype {got.dtype}.")
        if got.min() < 0 or got.max() >= depth:
            fail(f"depth {depth}: partners must lie in 0..{depth - 1}, got values from {got.min()} to {got.max()}.")
        close = np.abs(got - z) < gap
        if close.any():
            i = int(np.flatnonzero(close)[0])
            fail(f"depth {depth}, gap {gap}: slice {z[i]} got partner {got[i]}, only {abs(got[i] - z[i])} away. "
                 "A neighbour's label map is almost the right one, so the discriminator learns nothing from it.")
        for zi in range(depth):
            allowed = {o for o in range(depth) if abs(o - zi) >= gap}
            drawn = set(got[z == zi].tolist())
            if drawn != allowed:
                missing = sorted(allowed - drawn)
                fail(f"depth {depth}, gap {gap}: slice {zi} never got partners {missing[:6]} in {draws} draws. "
                     "Draw uniformly from both sides: below (0..z-gap) and above (z+gap..depth-1).")
        _require_uniform(z, got, depth, gap, draws)
    reference = distant_slices(torch.arange(10), 10, 4, torch.Generator().manual_seed(0))
    return (f"partners respect the gap and cover both sides (the library's partners of slices 0-9 with gap 4: "
            f"{reference.tolist()}).")


def _require_uniform(z: np.ndarray, partners: np.ndarray, depth: int, gap: int, draws: int) -> None:
    """Fail when the partners of some slice are far from uniform over its allowed slices (a
    chi-square test over all slices at p < 1e-6: a uniform draw fails it once in a million)."""
    from scipy.stats import chi2

    counts = np.bincount(z * depth + partners, minlength=depth * depth).reshape(depth, depth).astype(float)
    allowed = np.abs(np.arange(depth)[:, None] - np.arange(depth)[None, :]) >= gap
    expected = np.where(allowed, draws / np.maximum(allowed.sum(axis=1, keepdims=True), 1), 0.0)
    statistic = float((((counts - expected) ** 2)[allowed] / expected[allowed]).sum())
    dof = int((allowed.sum(axis=1) - 1).clip(min=0).sum())
    if dof == 0 or chi2.sf(statistic, dof) >= 1e-6:
        return
    zi, partner = np.unravel_index(np.argmax(np.where(allowed, np.abs(counts - expected) / np.maximum(expected, 1), 0)),
                                   counts.shape)
    fail(f"depth {depth}, gap {gap}: partners are not uniform over the allowed slices: slice {zi} got partner "
         f"{partner} {int(counts[zi, partner])} times in {draws} draws, about {expected[zi, partner]:.0f} expected. "
         "Choosing a side first (each with probability 1/2) favours the side with fewer slices: every allowed "
         "slice, below or above, should be equally likely.")


def _epoch(epoch, src_j, frac, entropy, target_j):
    return {"epoch": epoch, "source_val_boundary_jaccard": src_j, "target_boundary_fraction": frac,
            "source_boundary_fraction": 0.12, "target_entropy": entropy,
            "target": {"boundary_jaccard": target_j}}


#: (what the case tests, per-epoch reports); target scores are decoys a label-free rule must ignore
_SELECTION_CASES = [
    ("lowest entropy among healthy epochs",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.79, 0.13, 0.45, 0.41), _epoch(2, 0.78, 0.14, 0.40, 0.30)]),
    ("an epoch that forgot the source",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.79, 0.13, 0.45, 0.41), _epoch(2, 0.60, 0.13, 0.20, 0.60)]),
    ("walls collapsing (confident, but almost no boundary)",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.80, 0.11, 0.45, 0.42), _epoch(2, 0.80, 0.03, 0.05, 0.10)]),
    ("walls everywhere",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.80, 0.30, 0.30, 0.45)]),
    ("nothing passes: keep the source model",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.70, 0.12, 0.30, 0.50), _epoch(2, 0.80, 0.01, 0.10, 0.05)]),
    ("entropy rising again after its lowest epoch",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.80, 0.12, 0.35, 0.42), _epoch(2, 0.80, 0.12, 0.40, 0.43)]),
    ("a slow drift, epoch by epoch",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.77, 0.12, 0.45, 0.41), _epoch(2, 0.74, 0.12, 0.40, 0.45)]),
    ("a small drop from a low start",
     [_epoch(0, 0.50, 0.12, 0.50, 0.40), _epoch(1, 0.47, 0.12, 0.40, 0.42), _epoch(2, 0.50, 0.12, 0.45, 0.41)]),
    ("walls thinning to 0.6 of the source's",
     [_epoch(0, 0.80, 0.12, 0.50, 0.40), _epoch(1, 0.80, 0.075, 0.30, 0.45), _epoch(2, 0.80, 0.12, 0.40, 0.41)]),
    ("a target that started far from the source",
     [_epoch(0, 0.80, 0.20, 0.50, 0.40), _epoch(1, 0.80, 0.20, 0.30, 0.45), _epoch(2, 0.80, 0.13, 0.40, 0.41)]),
]


@exercise_check("label-free model selection")
def check_label_free_choice(func: Callable[[list[dict]], int]) -> str:
    """Check ``func(epochs) -> epoch`` against
    :func:`emseg_tutorial.adapt.diagnostics.label_free_choice` on small made-up histories, each built to catch one mistake; the ``target`` scores in them
    are decoys that a label-free rule must not read."""
    require_function(func)
    candidates = dict(CHOICE_MISREADINGS)
    for what, epochs in _SELECTION_CASES:
        blind = [{k: v for k, v in e.items() if k != "target"} for e in epochs]
        try:
            got = func([dict(e) for e in blind])
        except KeyError as err:
            fail(f"case '{what}': your rule read {err}, which a user without target labels does not have. "
                 "Use only the source validation Jaccard, boundary fractions and entropy.")
        except Exception:  # noqa: BLE001 - run again through call() for the usual message
            got = call(func, [dict(e) for e in blind])
        expected = label_free_choice(epochs)
        candidates = narrow(candidates, got, lambda m: choice_read_as(blind, m))
        if got != expected:
            best_target = max(epochs[1:], key=lambda e: e["target"]["boundary_jaccard"])["epoch"]
            lowest_entropy = min(epochs[1:], key=lambda e: e["target_entropy"])["epoch"]
            misread = next(iter(candidates.values()), "")
            hint = (f" Hint: {misread}." if misread else
                    " Hint: when no epoch passes, return 0 (keep the source model), not None." if got is None else
                    " That is the epoch with the lowest entropy, but it fails a sanity check."
                    if got == lowest_entropy else
                    " That is the epoch with the best target score: a label-free rule cannot know it."
                    if got == best_target else "")
            fail(f"case '{what}': expected epoch {expected}, got {got!r}.{hint} Reject epochs whose source "
                 "validation Jaccard fell by more than 0.05 since before adaptation or whose boundary fraction "
                 "is off the source's by more than a factor 1.5; keep the lowest entropy among the rest; 0 if "
                 "none is left.")
    return f"your rule agrees with the library's on all {len(_SELECTION_CASES)} made-up histories."
