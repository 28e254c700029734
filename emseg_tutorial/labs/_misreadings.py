"""Plausible misreadings of the adaptation warning rules, to name a student's mistake.

Exercises 5.3 (warnings) and 6.2 (label-free choice) apply the rules of
:mod:`emseg_tutorial.adapt.diagnostics`. When an answer differs from the library's, the checks
ask which misreading of the rules gives the student's answer on that history, and name it in
the hint. :func:`warnings_read_as` is the rules under one misreading (``None``: as written).

Examples
--------
>>> epochs = [{"target_entropy": 0.3, "target_boundary_fraction": 0.1, "source_boundary_fraction": 0.1,
...            "source_val_boundary_jaccard": 0.80},
...           {"target_entropy": 0.3, "target_boundary_fraction": 0.1, "source_boundary_fraction": 0.1,
...            "source_val_boundary_jaccard": 0.77},
...           {"target_entropy": 0.3, "target_boundary_fraction": 0.1, "source_boundary_fraction": 0.1,
...            "source_val_boundary_jaccard": 0.74}]
>>> sorted(warnings_read_as(epochs)), sorted(warnings_read_as(epochs, "previous epoch"))
(['source drift'], [])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..adapt.diagnostics import (DISCRIMINATOR_WINS, DISQUALIFYING, ENTROPY_DROP, MAX_SOURCE_DROP,
                                 PRIOR_FACTOR)

#: Each misreading and the sentence a hint names it with.
MISREADINGS = {
    "previous epoch": "you compared with the previous epoch; the rules compare with the report before "
                      "adaptation (epoch 0)",
    "relative drop": f"you measured the source Jaccard's drop relative to its value; the rule is an absolute "
                     f"drop of {MAX_SOURCE_DROP:g}",
    "lower bound 0.5": f"the lower band edge is 1/{PRIOR_FACTOR:g} (about 0.67) of the source fraction, "
                       "not 0.5",
    "upper bound only": f"a boundary fraction far *below* the source's (under 1/{PRIOR_FACTOR:g} of it) "
                        "is a warning too",
    "any epoch": "you looked at every epoch; the warnings are those of the last epoch only",
    "real or fake": "the discriminator wins only when it is right on real *and* on fake maps",
    "target before": "the boundary fraction is compared with the *source's* fraction, not with the "
                     "target's before adaptation",
}


def _warnings_of(report: Mapping, before: Mapping, misreading: str | None) -> set[str]:
    found = set()
    real, fake = report.get("d_acc_real"), report.get("d_acc_fake")
    if real is not None and fake is not None:
        both = (max if misreading == "real or fake" else min)(real, fake)
        if both >= DISCRIMINATOR_WINS:
            found.add("discriminator wins")
    prior = before["target_boundary_fraction"] if misreading == "target before" else report["source_boundary_fraction"]
    ratio = report["target_boundary_fraction"] / prior
    low = {"lower bound 0.5": 0.5, "upper bound only": 0.0}.get(misreading, 1 / PRIOR_FACTOR)
    if not low <= ratio <= PRIOR_FACTOR:
        found.add("boundary fraction")
    if report["target_entropy"] < ENTROPY_DROP * before["target_entropy"]:
        found.add("entropy collapse")
    src, src0 = report.get("source_val_boundary_jaccard"), before.get("source_val_boundary_jaccard")
    if src is not None and src0 is not None:
        drop = (src0 - src) / src0 if misreading == "relative drop" else src0 - src
        if drop > MAX_SOURCE_DROP:
            found.add("source drift")
    return found


def warnings_read_as(epochs: Sequence[Mapping], misreading: str | None = None) -> set[str]:
    """The warnings of the last of ``epochs`` (epoch 0 first) under ``misreading`` (``None``: the rules)."""
    if len(epochs) < 2:
        return set()
    if misreading == "any epoch":
        return set().union(*(_warnings_of(e, epochs[0], None) for e in epochs[1:]))
    before = epochs[-2] if misreading == "previous epoch" else epochs[0]
    return _warnings_of(epochs[-1], before, misreading)


def choice_read_as(epochs: Sequence[Mapping], misreading: str | None = None) -> int:
    """The label-free choice (lowest entropy among the epochs without a disqualifying warning,
    0 when none is left) under ``misreading``; also ``"last healthy"`` (the last epoch that
    passes) and ``"no checks"`` (the lowest entropy of all)."""
    kept = []
    for i in range(1, len(epochs)):
        seen = epochs[:i + 1] if misreading == "previous epoch" else [epochs[0], epochs[i]]
        rule = None if misreading in ("any epoch", "last healthy", "no checks") else misreading
        if misreading == "no checks" or not set(DISQUALIFYING) & warnings_read_as(seen, rule):
            kept.append(epochs[i])
    if not kept:
        return epochs[0]["epoch"]
    if misreading == "last healthy":
        return kept[-1]["epoch"]
    return min(kept, key=lambda e: e["target_entropy"])["epoch"]


#: The choice's own misreadings, beside those of the rules.
CHOICE_MISREADINGS = {
    **{k: v for k, v in MISREADINGS.items() if k not in ("any epoch", "real or fake")},
    "last healthy": "you kept the last epoch that passes the checks; keep the one with the lowest target "
                    "entropy among them",
    "no checks": "you kept the lowest entropy without first rejecting the epochs that fail a sanity check",
}


def narrow(candidates: Mapping[str, str], got: object, answer_under: Callable[[str], object]) -> dict[str, str]:
    """The misreadings of ``candidates`` under which ``answer_under(misreading) == got``.

    A check narrows its candidates on every case, passed or failed, so that the one it names in
    a hint explains all of the student's answers so far.
    """
    kept = {}
    for name, sentence in candidates.items():
        try:
            if answer_under(name) == got:
                kept[name] = sentence
        except (KeyError, TypeError, ZeroDivisionError):
            continue
    return kept
