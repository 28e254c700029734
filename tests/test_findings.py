"""Chapters 5 and 6 read their runs through sentences and numbers computed from them (no training)."""

import numpy as np
import pytest

from emseg_tutorial.paper import comparison as C
from emseg_tutorial.paper.adaptation import adaptation_findings, adaptation_numbers


def _epoch(epoch, j=0.4, src_j=0.8, frac=0.12, entropy=0.5, prior=0.12, **extra):
    return {"epoch": epoch, "source_val_boundary_jaccard": src_j, "target_boundary_fraction": frac,
            "source_boundary_fraction": prior, "target_entropy": entropy, "d_acc_real": None, "d_acc_fake": None,
            "target": {"boundary_jaccard": j, "boundary_f1": j + 0.1, "adapted_rand_error": 0.5}, **extra}


def _history(*epochs):
    return {"epochs": [_epoch(0), *epochs], "seconds": 12.5}


def test_adaptation_numbers_are_plain_values_from_the_history():
    h = _history(_epoch(1, j=0.45, d_acc_real=0.95, d_acc_fake=0.97, d_acc_target_soft=0.9, d_acc_target_hard=0.2),
                 _epoch(2, j=0.30, frac=0.01, d_acc_real=np.float64(0.99), d_acc_fake=0.99))
    n = adaptation_numbers(h)
    assert n["j_before"] == 0.4 and n["j_last"] == 0.3 and n["j_change"] == pytest.approx(-0.1)
    assert (n["oracle_epoch"], n["j_oracle"]) == (1, 0.45)
    assert n["label_free_epoch"] == 1                      # epoch 2's walls vanished
    assert n["epochs"] == 2 and n["seconds"] == 12.5
    assert all(type(v) in (int, float) for v in n.values())  # glue renders plain numbers only
    assert "probe_soft" not in n                           # the last epoch has no probe


def test_adaptation_findings_follow_the_numbers():
    collapsed = _history(_epoch(1, j=0.35, frac=0.02, entropy=0.1, src_j=0.7, d_acc_real=0.95, d_acc_fake=0.92,
                                d_acc_target_soft=0.9, d_acc_target_hard=0.1))
    text = adaptation_findings(collapsed, "cpu")
    assert "`cpu` preset" in text and "fell from 0.400 to 0.350 (-0.050)" in text
    assert '"discriminator wins", "boundary fraction", "entropy collapse", "source drift"' in text
    assert "walls vanish" in text and "it leans on softness" in text and "would keep M3 itself" in text
    assert "specific to target images" not in text         # the source score did not hold

    calm = _history(_epoch(1, j=0.38, d_acc_real=0.6, d_acc_fake=0.55, d_acc_target_soft=0.5, d_acc_target_hard=0.45))
    text = adaptation_findings(calm, "gpu")
    assert "None of the label-free warnings fires" in text and "it wins" not in text
    assert "softness is not its main cue" in text and "within the allowed band" in text
    assert "specific to target images" in text
    assert "stayed at 0.400" in adaptation_findings(_history(_epoch(1, j=0.4)), "ci")


def _comparison():
    runs = []
    for seed, js in enumerate([(0.40, 0.45, 0.42), (0.40, 0.47, 0.44), (0.40, 0.43, 0.46)]):
        epochs = [_epoch(e, entropy=0.5 - 0.1 * e, j=j, src_j=0.8 + 0.01 * e) for e, j in enumerate(js)]
        runs.append(C.MethodRun("adaptsegnet", seed, epochs, [], 1.0))
    runs.append(C.MethodRun("paper", 0, [_epoch(0), _epoch(1, j=0.2, frac=0.01)], [], 1.0))
    runs.append(C.MethodRun("adabn", None, [_epoch(0), _epoch(1, j=0.5)], [], 1.0))
    return C.Comparison(runs=runs, source_only=_epoch(0), snapshot_slice=0, target_eval=None,
                        source_only_snapshot=np.zeros((2, 2)), preset="cpu", seconds=3.0,
                        settings={"seeds": [0, 1, 2], "epochs": 2, "steps_per_epoch": 15, "lr_g": 1e-4})


def test_the_spread_is_said_to_cover_adaptation_seeds_of_one_source_model():
    comp = _comparison()
    note = C.spread_note(comp)
    assert "n = 3 adaptation seeds (0, 1, 2)" in note and "same source model M3" in note and "`cpu`" in note
    assert C.comparison_table(comp).index.name == "method (n = 3 adaptation seeds, one M3)"
    assert "over 3 adaptation seeds from one M3" in C.findings(comp)


def test_comparison_findings_and_numbers():
    comp = _comparison()
    text = C.findings(comp)
    assert "Trained methods above AdaBN (0.500, no gradient step) at the last epoch: none." in text
    assert "`adabn` leads `adaptsegnet` by 0.060" in text
    assert "`adaptsegnet` 0.820" in text                    # source validation with the source loss kept
    assert "its walls vanish" in text
    n = C.comparison_numbers(comp)
    assert (n["preset"], n["n_seeds"], n["runs"], n["updates"]) == ("cpu", 3, 5, 30)
    assert n["lr_ratio"] == pytest.approx(10.0)
    assert (n["best_last"], n["best_last_j"]) == ("adabn", 0.5)
    assert n["adaptsegnet_j"] == pytest.approx(0.44) and n["paper_j"] == pytest.approx(0.2)
    assert all(type(v) in (int, float, str) for v in n.values())


def test_glue_numbers_glues_every_value_under_its_key(monkeypatch):
    import myst_nb

    from emseg_tutorial.paper import glue_numbers

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.update({name: (value, display)}))
    assert glue_numbers("ch5", {"j_last": 0.31, "preset": "cpu"}) == ["ch5_j_last", "ch5_preset"]
    assert glued == {"ch5_j_last": (0.31, False), "ch5_preset": ("cpu", False)}


def test_conditional_findings_name_the_domain_shortcut_only_past_the_gap():
    comp = _comparison()
    for name, (tgt, wrong) in {"conditional": (0.9, 0.4), "conditional-paper": (0.3, 0.35)}.items():
        last = _epoch(1, d_acc_fake_target=tgt, d_acc_fake_mismatch=wrong)
        comp.runs.append(C.MethodRun(name, 0, [_epoch(0), last], [], 1.0))
    text = C.findings(comp)
    assert "`conditional` catches 0.90 of target pairs and 0.40 of wrong-slice pairs (the domain shortcut" in text
    assert "`conditional-paper` catches 0.30 of target pairs and 0.35 of wrong-slice pairs (no sign" in text
