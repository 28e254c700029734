"""Reference answers the checks need that the rest of the library does not compute.

Most checks compare a student's code with the library function it re-implements
(:func:`emseg_tutorial.weights.label_entropy`, :func:`emseg_tutorial.metrics.jaccard_from_confusion`,
:func:`emseg_tutorial.train.adversarial.discriminator_step`, ...). The rule of thumb of chapter 5's
exercise, which turns the adaptation diagnostics into warnings, lives here.

Examples
--------
>>> epoch0 = {"d_acc_real": None, "d_acc_fake": None, "target_boundary_fraction": 0.1,
...           "source_boundary_fraction": 0.1, "target_entropy": 0.3, "source_val_boundary_jaccard": 0.8}
>>> last = dict(epoch0, d_acc_real=0.97, d_acc_fake=0.95, target_entropy=0.1)
>>> sorted(adaptation_warnings({"epochs": [epoch0, last]}))
['discriminator wins', 'entropy collapse']
"""

from __future__ import annotations

from typing import Mapping

#: The warnings :func:`adaptation_warnings` can raise, in the order chapter 5 explains them.
WARNINGS = ("discriminator wins", "boundary fraction", "entropy collapse", "source drift")


def adaptation_warnings(history: Mapping, *, accuracy: float = 0.9, fraction_factor: float = 2.0,
                        entropy_drop: float = 0.5, source_drop: float = 0.1) -> set[str]:
    """Label-free warning signs of an adversarial adaptation run, from its history.

    Parameters
    ----------
    history : mapping
        An adaptation history (:func:`emseg_tutorial.train.adapt`): ``history["epochs"]`` is a
        list of per-epoch reports, the first taken before adaptation.
    accuracy : float, optional
        "discriminator wins" when, in the last epoch, it is right on at least this share of
        both real and fake maps.
    fraction_factor : float, optional
        "boundary fraction" when the last epoch's predicted boundary fraction on the target is
        more than this factor above or below the source labels' boundary fraction.
    entropy_drop : float, optional
        "entropy collapse" when the last epoch's mean prediction entropy on the target is below
        this share of its value before adaptation.
    source_drop : float, optional
        "source drift" when the source validation boundary Jaccard fell by more than this
        (only when the run recorded it).

    Returns
    -------
    set of str
        A subset of :data:`WARNINGS`; empty when nothing looks wrong.

    Notes
    -----
    None of these signals reads target labels, so each is available on a truly unlabelled
    volume. They are warnings, not proofs: a sharper, more confident network can also be a
    better one; chapter 5 compares them with the scores on held-out target labels.
    """
    epochs = list(history["epochs"])
    if len(epochs) < 2:
        return set()
    first, last = epochs[0], epochs[-1]
    found = set()
    real, fake = last.get("d_acc_real"), last.get("d_acc_fake")
    if real is not None and fake is not None and min(real, fake) >= accuracy:
        found.add("discriminator wins")
    predicted, source = last["target_boundary_fraction"], last["source_boundary_fraction"]
    if source > 0 and not source / fraction_factor <= predicted <= source * fraction_factor:
        found.add("boundary fraction")
    if last["target_entropy"] < entropy_drop * first["target_entropy"]:
        found.add("entropy collapse")
    before, after = first.get("source_val_boundary_jaccard"), last.get("source_val_boundary_jaccard")
    if before is not None and after is not None and before - after > source_drop:
        found.add("source drift")
    return found
