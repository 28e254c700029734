"""Chapters 3-6 read their runs through sentences and numbers computed from them (no training).

The tests check the numbers and claims each sentence carries (which bullet quotes which values,
which way a score moved, which warnings fired, which method leads), not its wording: a bullet is
found by the numbers it quotes, and a claim is one word of it.
"""

import re

import numpy as np
import pandas as pd
import pytest

from emseg_tutorial.adapt.diagnostics import WARNINGS, adaptation_warnings
from emseg_tutorial.paper import comparison as C
from emseg_tutorial.paper import sentences
from emseg_tutorial.paper.adaptation import adaptation_findings, adaptation_numbers
from emseg_tutorial.paper.stages import STAGES

_NUMBER = re.compile(r"[-+]?\d+\.\d+")


def _header(text):
    return text.splitlines()[0]


def _bullet(text, *quoted):
    """The one bullet of ``text`` that quotes every string of ``quoted``."""
    hits = [line for line in text.splitlines() if line.startswith("* ") and all(q in line for q in quoted)]
    assert len(hits) == 1, f"{len(hits)} bullets quote {quoted}:\n{text}"
    return hits[0]


def _methods(line):
    """Method / stage names a line quotes in backticks, in order."""
    return re.findall(r"`([\w-]+)`", line)


def _named_warnings(text):
    return {w for w in WARNINGS if f'"{w}"' in text}


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
    assert "`cpu`" in _header(text)
    assert "fell" in _bullet(text, "0.400", "0.350", "-0.050")               # target score: M3 -> last
    assert "M3" in _bullet(text, "epoch 1", "0.350", "0.400")                # label-free rule keeps M3
    assert _named_warnings(text) == set(adaptation_warnings(collapsed)) == set(WARNINGS)
    assert "wins" in _bullet(text, "0.95", "0.92")                           # both >= DISCRIMINATOR_WINS
    assert "20%" in _bullet(text, "0.500", "0.100")                          # entropy: a fifth of before
    assert "vanish" in _bullet(text, "0.120", "0.020", "0.17")               # walls below the band
    assert "leans on softness" in _bullet(text, "0.90", "0.10")              # probe gap 0.8 > SOFTNESS_GAP
    assert "target images" not in text                                       # the source score did not hold

    calm = _history(_epoch(1, j=0.38, d_acc_real=0.6, d_acc_fake=0.55, d_acc_target_soft=0.5, d_acc_target_hard=0.45))
    text = adaptation_findings(calm, "gpu")
    assert "`gpu`" in _header(text) and _named_warnings(text) == set(adaptation_warnings(calm)) == set()
    assert "wins" not in _bullet(text, "0.60", "0.55")
    assert "leans on softness" not in _bullet(text, "0.50", "0.45")          # gap 0.05: not its cue
    assert "within" in _bullet(text, "0.120", "1.00")                        # walls within the band
    assert "no more" in _bullet(text, "0.800") and "target images" in text   # target fell, source held
    first = adaptation_findings(_history(_epoch(1, j=0.4)), "ci").splitlines()[2]   # the target score
    assert "stayed" in first and _NUMBER.findall(first) == ["0.400"]         # no change quoted


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
    assert "n = 3" in note and "(0, 1, 2)" in note and "M3" in note and "`cpu`" in note
    index_name = C.comparison_table(comp).index.name
    assert "n = 3" in index_name and "M3" in index_name
    assert "3" in _header(C.findings(comp)) and "M3" in _header(C.findings(comp))


def test_comparison_findings_and_numbers():
    comp = _comparison()
    text = C.findings(comp)
    assert _methods(_bullet(text, "0.500", "one pass")) == ["adabn"]      # no trained method above AdaBN
    assert _methods(_bullet(text, "0.060")) == ["adabn", "adaptsegnet"]    # who leads whom, by how much
    assert _methods(_bullet(text, "0.800", "0.820")) == ["adaptsegnet"]    # source validation, source loss kept
    paper = _bullet(text, "`paper`:", "0.010")
    assert "vanish" in paper and "0.120" in paper                           # walls below the band
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
    parts = {_methods(part)[0]: part for part in _bullet(C.findings(comp), "0.90", "0.40").split("; ")}
    assert "0.90" in parts["conditional"] and "0.40" in parts["conditional"]
    assert "shortcut" in parts["conditional"] and "no sign" not in parts["conditional"]    # gap 0.5
    assert "0.30" in parts["conditional-paper"] and "0.35" in parts["conditional-paper"]
    assert "no sign" in parts["conditional-paper"]                                          # gap -0.05


# --------------------------------------------------------------------------- chapters 3 and 4
def _table(means, sds, n=3):
    rows = {k: {"weights": STAGES[k].weights, "n": n, "boundary_jaccard mean": m, "boundary_jaccard sd": s}
            for (k, m), s in zip(means.items(), sds)}
    table = pd.DataFrame(rows).T
    table["n"] = table["n"].astype(int)
    return table


def test_weighting_findings_weigh_differences_against_seed_noise():
    clear = _table({"m2": 0.80, "m2_ratio2": 0.70, "m2_ratio5": 0.65, "m2_ratio10": 0.60}, [0.01] * 4)
    text = sentences.weighting_findings(clear, preset="cpu")
    assert "cpu" in _header(text) and "3" in _header(text)
    assert _methods(_bullet(text, "0.800 ± 0.010")) == ["m2", "m2_ratio10"]   # highest, lowest
    for other, diff in {"m2_ratio2": "+0.100", "m2_ratio5": "+0.150", "m2_ratio10": "+0.200"}.items():
        line = _bullet(text, f"`{other}`", diff)
        assert "0.016" in line and "larger" in line                          # 2 se = 2 sqrt(2 * 0.01^2 / 3)
    assert "beats every" in _bullet(text, "3 seeds")

    noisy = _table({"m2": 0.75, "m2_ratio2": 0.74, "m2_ratio5": 0.70, "m2_ratio10": 0.60}, [0.05] * 4)
    text = sentences.weighting_findings(noisy, preset="cpu")
    assert "within" in _bullet(text, "`m2_ratio2`", "+0.010", "0.082")
    assert "larger" in _bullet(text, "`m2_ratio10`", "+0.150", "0.082")
    summary = _bullet(text, "3 seeds")
    assert "higher mean" in summary and "not by more" in summary and _methods(summary) == ["m2"]

    lost = _table({"m2": 0.70, "m2_ratio2": 0.74, "m2_ratio5": 0.70, "m2_ratio10": 0.60}, [0.01] * 4)
    summary = _bullet(sentences.weighting_findings(lost, preset="gpu"), "3 seeds")
    assert "below" in summary and _methods(summary) == ["m2", "m2_ratio2"]    # clearly below ratio 2 only

    tied = _table({"m2": 0.70, "m2_ratio2": 0.72, "m2_ratio5": 0.70, "m2_ratio10": 0.60}, [0.05] * 4)
    summary = _bullet(sentences.weighting_findings(tied, preset="gpu"), "3 seeds")
    assert "within" in summary and _methods(summary) == ["m2", "m2_ratio2", "m2_ratio5"]

    one = _table({"m2": 0.70, "m2_ratio2": 0.74}, [np.nan] * 2, n=1)
    bullets = [line for line in sentences.weighting_findings(one, preset="ci").splitlines() if line.startswith("* ")]
    assert len(bullets) == 2 and "unknown" in bullets[1]                     # no difference weighed


def test_ratio_and_transfer_findings():
    table = pd.DataFrame({"boundary_recall": [0.9, 0.95, 0.98], "boundary_precision": [0.8, 0.7, 0.6],
                          "boundary_jaccard": [0.75, 0.7, 0.62]}, index=["m2_ratio2", "m2_ratio5", "m2_ratio10"])
    text = sentences.ratio_findings(table, preset="cpu")
    assert "cpu" in text and "2:1 -> 5:1 -> 10:1" in text
    parts = dict(part.split(" ", 1) for part in text.split(": ", 1)[1].rstrip(".").split("; "))
    assert parts["recall"] == "rises (0.900 -> 0.950 -> 0.980)"
    assert parts["precision"] == "falls (0.800 -> 0.700 -> 0.600)"
    assert parts["jaccard"] == "falls (0.750 -> 0.700 -> 0.620)"
    m2 = {"val": [{"step": 40, "boundary_jaccard": 0.7}, {"step": 80, "boundary_jaccard": 0.78}]}
    scratch = {"val": [{"step": 80, "boundary_jaccard": 0.8}, {"step": 360, "boundary_jaccard": 0.85}]}
    text = sentences.transfer_findings(m2, scratch, preset="cpu")
    assert "cpu" in text and "360" in text
    at_same_step = text[text.index("0.780"):text.index("(0.800)")]            # M2 at step 80 vs scratch at 80
    assert "lower" in at_same_step and "80" in at_same_step
    assert "higher" in text[text.index("0.850"):]                           # scratch's whole budget vs M2


def test_experiment1_and_target_findings():
    table = pd.DataFrame({"J boundary": [0.8, 0.81], "J mitochondrion": [0.9, 0.8], "mean_jaccard": [0.88, 0.85]},
                         index=["M1", "plain"])
    text = sentences.experiment1_findings(table, weighted="M1", plain="plain", preset="cpu")
    assert "cpu" in _header(text)
    assert "**M1**" in _bullet(text, "0.880", "0.850", "0.030")               # the higher one, by how much
    gains = _bullet(text, "+0.100", "-0.010")
    assert gains.index("mitochondrion") < gains.index("+0.100") < gains.index("boundary") < gains.index("-0.010")
    assert "above" in _bullet(text, "0.72", "0.160")                          # 0.880 - 0.72
    target = pd.DataFrame({"boundary_jaccard": [0.25, 0.43, 0.40]}, index=["m2", "m3", "m3_distance10"])
    text = sentences.target_findings(target, preset="ci")
    assert "ci" in _header(text)
    assert "raised" in _bullet(text, "0.250", "0.430")
    assert "below" in _bullet(text, "0.400", "0.030")


# --------------------------------------------------------------------------- small presets (issue 25, item 4)
def _claim(text, *quoted):
    """Whether the one small-preset claim of ``text`` quoting every string of ``quoted`` is shown."""
    hits = [line for line in text.splitlines() if line.startswith("- ") and all(q in line for q in quoted)]
    assert len(hits) == 1, f"{len(hits)} claims quote {quoted}:\n{text}"
    return "not shown" not in hits[0]


def _chapter_texts(preset):
    """Every findings function's text at ``preset``, from numbers that contradict the cpu story."""
    ch3 = pd.DataFrame({"J boundary": [0.05, 0.30], "mean_jaccard": [0.40, 0.45]}, index=["M1", "plain"])
    weighting = _table({"m2": 0.02, "m2_ratio2": 0.30, "m2_ratio5": 0.25, "m2_ratio10": 0.20}, [0.01] * 4)
    weighting.attrs["preset"] = preset
    ratios = pd.DataFrame({"boundary_recall": [0.9, 0.95, 0.98], "boundary_precision": [0.8, 0.7, 0.6],
                           "boundary_jaccard": [0.75, 0.7, 0.62]}, index=["m2_ratio2", "m2_ratio5", "m2_ratio10"])
    m2 = {"val": [{"step": 80, "boundary_jaccard": 0.03}]}
    scratch = {"val": [{"step": 80, "boundary_jaccard": 0.3}, {"step": 360, "boundary_jaccard": 0.5}]}
    target = pd.DataFrame({"boundary_jaccard": [0.25, 0.43]}, index=["m2", "m3"])
    comp = _comparison()
    comp.preset = preset
    return {"ch3": sentences.experiment1_findings(ch3, weighted="M1", plain="plain", preset=preset),
            "weighting": sentences.weighting_findings(weighting),
            "ratio": sentences.ratio_findings(ratios, preset=preset),
            "transfer": sentences.transfer_findings(m2, scratch, preset=preset),
            "target": sentences.target_findings(target, preset=preset),
            "ch5": adaptation_findings(_history(_epoch(1, j=0.02, d_acc_real=0.99, d_acc_fake=1.0)), preset),
            "ch6": C.findings(comp)}


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_no_small_preset_note_at_cpu_or_larger(preset):
    for name, text in _chapter_texts(preset).items():
        assert "smaller than `cpu`" not in text and not any(line.startswith("- ") for line in text.splitlines()), name


@pytest.mark.parametrize("preset", ["ci", "lab"])
def test_small_preset_notes_say_which_claims_need_cpu_and_what_the_run_shows(preset):
    texts = _chapter_texts(preset)
    for name, text in texts.items():
        assert f"**At the `{preset}` preset**" in text and "need the `cpu` preset or larger" in text, name
    ch3 = texts["ch3"]
    assert not _claim(ch3, "higher mean Jaccard", "0.400 against 0.450")    # no weights beat M1
    assert not _claim(ch3, "finds the walls", "0.050")                      # M1's walls below WALLS_FOUND
    assert not _claim(texts["weighting"], "finds the walls", "`m2` 0.020")   # a collapsed fine-tuning
    assert not _claim(texts["weighting"], "every fixed ratio", "`m2` 0.020", "`m2_ratio2` 0.300")
    assert _claim(texts["ratio"], "precision for recall", "0.900 -> 0.950 -> 0.980")
    assert not _claim(texts["transfer"], "from scratch at the same step", "0.030 against 0.300")
    assert not _claim(texts["transfer"], "find the walls", "from M1 0.030, from scratch 0.500")
    assert _claim(texts["target"], "Jitter", "M2 0.250, M3 0.430")
    assert not _claim(texts["ch5"], "finds the target's walls", "0.020")
    assert not _claim(texts["ch5"], "every prediction fake", "1.00 called fake")
    ch6 = texts["ch6"]
    assert _claim(ch6, "beats the source model", "`adabn` 0.500, source model 0.400")
    kept, runs = map(int, re.search(r"kept in (\d+) of (\d+) runs", ch6).groups())
    assert _claim(ch6, "label-free rule", f"{kept} of {runs}") is (kept < runs)
    assert sentences.small_preset_note(preset, []) == ""                    # nothing to say
