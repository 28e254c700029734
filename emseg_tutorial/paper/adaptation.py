"""Chapter 5's run in sentences: what one adaptation history shows, computed from it.

The chapter shows :func:`adaptation_findings` (Markdown) instead of hand-written claims and
glues :func:`adaptation_numbers` into its prose (``myst_nb.glue``), so its reading of the run
always matches the build it appears in; every statement is stamped with the preset. The
thresholds are those of :mod:`emseg_tutorial.adapt.diagnostics`, plus the probe's
:data:`SOFTNESS_GAP`.
"""

from __future__ import annotations

from .gap import GapScores, provenance_note
from ..adapt.diagnostics import (DISCRIMINATOR_WINS, boundary_band, ENTROPY_DROP, MAX_SOURCE_DROP, PRIOR_FACTOR, WARNINGS,
                                 adaptation_warnings, label_free_choice, oracle_choice)
from .sentences import WALLS_FOUND, with_small_preset_note

#: Chapter 5's reading of the hard-vs-soft probe: a discriminator that calls this much larger a
#: share of soft target predictions fake than of the same predictions made hard judges softness.
SOFTNESS_GAP = 0.1
#: Changes smaller than this (half the last printed digit) read as "no change" in the findings.
UNCHANGED = 0.0005


def adaptation_numbers(history: dict) -> dict[str, float | int]:
    """The numbers chapter 5's text quotes, as plain Python values (for ``myst_nb.glue``).

    Keys: ``epochs``; target boundary Jaccard ``j_before`` (M3), ``j_last``, ``j_change``, the
    oracle's ``oracle_epoch`` and ``j_oracle``, the label-free rule's ``label_free_epoch`` and
    ``j_label_free``; the label-free diagnostics of the last epoch against those before
    adaptation (``d_acc_real``, ``d_acc_fake``, ``entropy_before``, ``entropy_last``,
    ``fraction_before``, ``fraction_last``, ``source_fraction`` (the unadapted network's, on
    the source), ``source_label_fraction``, ``source_j_before``,
    ``source_j_last``), the hard-vs-soft probe (``probe_soft``, ``probe_hard``) and ``seconds``.
    Entries the run did not record (no discriminator, no source validation) are left out.

    Examples
    --------
    >>> e0 = {"epoch": 0, "target": {"boundary_jaccard": 0.40}, "target_entropy": 0.5,
    ...       "target_boundary_fraction": 0.12, "source_boundary_fraction": 0.11,
    ...       "source_val_boundary_jaccard": 0.8}
    >>> e1 = {**e0, "epoch": 1, "target": {"boundary_jaccard": 0.35}, "target_entropy": 0.2}
    >>> n = adaptation_numbers({"epochs": [e0, e1], "seconds": 3.0})
    >>> round(n["j_change"], 3), n["oracle_epoch"], n["label_free_epoch"]
    (-0.05, 1, 1)
    """
    epochs = history["epochs"]
    first, last = epochs[0], epochs[-1]
    j = [e["target"]["boundary_jaccard"] for e in epochs]
    oracle, label_free = oracle_choice(epochs), label_free_choice(epochs)
    numbers = {"epochs": int(last["epoch"]), "j_before": j[0], "j_last": j[-1], "j_change": j[-1] - j[0],
               "oracle_epoch": int(oracle), "j_oracle": j[oracle], "label_free_epoch": int(label_free),
               "j_label_free": j[label_free], "d_acc_real": last.get("d_acc_real"),
               "d_acc_fake": last.get("d_acc_fake"), "entropy_before": first["target_entropy"],
               "entropy_last": last["target_entropy"], "fraction_before": first["target_boundary_fraction"],
               "fraction_last": last["target_boundary_fraction"],
               "source_fraction": last["source_boundary_fraction"],
               "source_label_fraction": last.get("source_label_fraction"),
               "source_j_before": first.get("source_val_boundary_jaccard"),
               "source_j_last": last.get("source_val_boundary_jaccard"),
               "probe_soft": last.get("d_acc_target_soft"), "probe_hard": last.get("d_acc_target_hard"),
               "seconds": history.get("seconds")}
    return {k: (v if isinstance(v, int) else float(v)) for k, v in numbers.items() if v is not None}


def _moved(before: float, after: float) -> str:
    change = after - before
    if abs(change) < UNCHANGED:
        return f"stayed at {after:.3f}"
    return f"{'rose' if change > 0 else 'fell'} from {before:.3f} to {after:.3f} ({change:+.3f})"


def fraction_sentence(n: dict) -> str:
    """The boundary-fraction line of :func:`adaptation_findings`, from :func:`adaptation_numbers`:
    the target's predicted fraction against the unadapted network's on the source (like with
    like, see :mod:`emseg_tutorial.adapt.diagnostics`), before adaptation and at the last epoch.

    Examples
    --------
    >>> text = fraction_sentence({"fraction_before": 0.13, "fraction_last": 0.30, "source_fraction": 0.14,
    ...                           "source_label_fraction": 0.11})
    >>> "0.93 before adaptation and 2.14 at the last epoch (walls spread" in text
    True
    """
    prior = n["source_fraction"]
    ratio = lambda f: f / prior if prior > 0 else float("nan")  # noqa: E731
    band = boundary_band(n["fraction_last"], prior)
    where = "within the allowed band" if band == "within" else f"walls {band}"
    labels = n.get("source_label_fraction")
    return (f"* Predicted target boundary fraction {_moved(n['fraction_before'], n['fraction_last'])}; the unadapted "
            f"network predicts {prior:.3f} on the source" + (f" (its labels have {labels:.3f})" if labels is not None else "")
            + f", a ratio of {ratio(n['fraction_before']):.2f} before adaptation and {ratio(n['fraction_last']):.2f} at "
            f"the last epoch ({where}: the band is 1/{PRIOR_FACTOR} to {PRIOR_FACTOR}).")


def adaptation_gap_rows(history: dict, method: str = "paper") -> dict[str, float]:
    """Target boundary Jaccard of an adaptation run at its last epoch and at the label-free
    choice, named for :func:`~.gap.gap_table`.

    Examples
    --------
    >>> e = [{"epoch": i, "target": {"boundary_jaccard": j}, "target_entropy": h, "target_boundary_fraction": 0.1,
    ...       "source_boundary_fraction": 0.1, "source_val_boundary_jaccard": 0.8}
    ...      for i, (j, h) in enumerate([(0.4, 0.5), (0.5, 0.3), (0.45, 0.4)])]
    >>> adaptation_gap_rows({"epochs": e})
    {'paper (last epoch)': 0.45, 'paper (label-free choice: epoch 1)': 0.5}
    """
    epochs = history["epochs"]
    choice = label_free_choice(epochs)
    return {f"{method} (last epoch)": float(epochs[-1]["target"]["boundary_jaccard"]),
            f"{method} (label-free choice: epoch {choice})": float(epochs[choice]["target"]["boundary_jaccard"])}


def adaptation_findings(history: dict, preset: str, *, gap: GapScores | None = None, data: str | None = None) -> str:
    """What one adaptation run (chapter 5) shows, as Markdown sentences computed from its history.

    Each statement comes from the run's numbers (:func:`adaptation_numbers`) and the warning
    thresholds of :mod:`emseg_tutorial.adapt.diagnostics`, stamped with ``preset``, so the
    chapter's reading always matches the build it appears in. With ``gap``
    (:func:`~.gap.domain_gap`) it also reads the run against source-only and the oracle model;
    with ``data`` (the session's data source) it ends by saying where the result comes from.

    Examples
    --------
    >>> e0 = {"epoch": 0, "target": {"boundary_jaccard": 0.40}, "target_entropy": 0.5,
    ...       "target_boundary_fraction": 0.12, "source_boundary_fraction": 0.11,
    ...       "source_val_boundary_jaccard": 0.8}
    >>> e1 = {**e0, "epoch": 1, "target": {"boundary_jaccard": 0.35}, "target_entropy": 0.2}
    >>> text = adaptation_findings({"epochs": [e0, e1]}, "cpu")
    >>> "fell from 0.400 to 0.350" in text, "entropy collapse" in text
    (True, True)
    """
    n = adaptation_numbers(history)
    found = adaptation_warnings(history)
    lines = [f"**Findings of this run** (`{preset}` preset, {n['epochs']} epoch{'s' * (n['epochs'] != 1)}; target scores on the held-out "
             "target volume, read by no update):", ""]
    lines.append(f"* Target boundary Jaccard {_moved(n['j_before'], n['j_last'])} between M3 and the last epoch.")
    best = "M3 itself" if n["label_free_epoch"] == 0 else f"epoch {n['label_free_epoch']}"
    lines.append(f"* The best epoch by target labels (an oracle) is epoch {n['oracle_epoch']}, at "
                 f"{n['j_oracle']:.3f}; the label-free rule of chapter 6 would keep {best}, at {n['j_label_free']:.3f}.")
    if found:
        lines.append("* Label-free warnings at the last epoch: " + ", ".join(f'"{w}"' for w in WARNINGS if w in found)
                     + ".")
    else:
        lines.append("* None of the label-free warnings fires at the last epoch.")
    if "d_acc_real" in n and "d_acc_fake" in n:
        wins = "discriminator wins" in found
        lines.append(f"* The discriminator is right on {n['d_acc_real']:.2f} of the real maps and {n['d_acc_fake']:.2f} "
                     f"of the predictions in the last epoch" + (f" (at least {DISCRIMINATOR_WINS} on both: it wins)."
                                                               if wins else "."))
    share = n["entropy_last"] / n["entropy_before"] if n["entropy_before"] > 0 else float("nan")
    lines.append(f"* Target prediction entropy {_moved(n['entropy_before'], n['entropy_last'])}, {share:.0%} of its "
                 f"value before adaptation ({'a collapse' if 'entropy collapse' in found else 'no collapse'}: "
                 f"the warning fires below {ENTROPY_DROP:.0%}).")
    lines.append(fraction_sentence(n))
    if "source_j_before" in n and "source_j_last" in n:
        drift = n["source_j_before"] - n["source_j_last"]
        lines.append(f"* Source validation boundary Jaccard {_moved(n['source_j_before'], n['source_j_last'])}: "
                     f"{'more' if drift > MAX_SOURCE_DROP else 'no more'} than the drop of {MAX_SOURCE_DROP} the "
                     "warning allows.")
        if n["j_change"] <= -UNCHANGED and drift <= MAX_SOURCE_DROP:
            lines.append("* The target score fell while the source score held: the changes are specific to "
                         "target images, not a general loss of skill.")
    if "probe_soft" in n and "probe_hard" in n:
        softness = n["probe_soft"] - n["probe_hard"]
        verdict = ("it leans on softness" if softness > SOFTNESS_GAP else "softness is not its main cue")
        lines.append(f"* Hard-vs-soft probe, last epoch: the discriminator calls {n['probe_soft']:.2f} of fresh soft "
                     f"target predictions fake and {n['probe_hard']:.2f} of the same made hard; {verdict} "
                     f"(a gap above {SOFTNESS_GAP} reads as leaning on softness).")
    if gap is not None:
        lines.append("* " + gap_sentence(gap, n))
    if data is not None:
        lines.append("* " + provenance_note(preset, data))
    claims = [(f"The adapted U-Net still finds the target's walls (boundary Jaccard at least {WALLS_FOUND} at the "
               "last epoch)", n["j_last"] >= WALLS_FOUND, f"{n['j_last']:.3f}")]
    if "d_acc_fake" in n:
        claims.append((f"The discriminator does not call every prediction fake (below {DISCRIMINATOR_WINS} of them)",
                       n["d_acc_fake"] < DISCRIMINATOR_WINS, f"{n['d_acc_fake']:.2f} called fake in the last epoch"))
    return with_small_preset_note("\n".join(lines), preset, claims)


def gap_sentence(gap: GapScores, n: dict) -> str:
    """The run's last epoch and label-free choice against source-only and the oracle model."""
    head = (f"Against the oracle model trained on the target's own labels ({gap.oracle:.3f}; no skill "
            f"{gap.no_skill:.3f}, source-only M3 {gap.source_only:.3f})")
    last, chosen = gap.closed(n["j_last"]), gap.closed(n["j_label_free"])
    if last is None or chosen is None:
        return head + ": the gap is too small to measure what adaptation closes."
    return (f"{head}, the last epoch closes {last:+.0%} of the gap and the label-free choice {chosen:+.0%} "
            "(negative: worse than not adapting).")
