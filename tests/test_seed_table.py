"""Experiment 2's weightings over several seeds: new stages, the seed path through get_stage,
the seed table and the findings computed from it."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.paper import scores
from emseg_tutorial.paper import stages as experiments
from emseg_tutorial.paper.stages import STAGES, WEIGHTING_STAGES, stage_config
from emseg_tutorial.presets import get_preset
from emseg_tutorial.session import from_env

TINY_MODEL = {"depth": 2, "base_width": 4, "norm": "batch"}


@pytest.fixture
def tiny_session(tmp_path):
    preset = dataclasses.replace(get_preset("ci"), model=dict(TINY_MODEL), patch=32, batch_size=2,
                                 steps_per_iteration=0.025, val_every=100)
    return from_env(preset=preset, device="cpu").replace(runs=tmp_path, progress=False)


def test_new_stages_and_their_configs(ci_session):
    assert set(WEIGHTING_STAGES) <= set(STAGES) and len(WEIGHTING_STAGES) == 10
    assert stage_config("m2_focal", ci_session).loss == "focal"
    assert stage_config("m2_dice", ci_session).loss == "dice"
    assert stage_config("m2", ci_session).loss == "ce"
    assert stage_config("m2_entropy", ci_session).weights == "entropy"
    m3d = STAGES["m3_distance10"]
    assert (m3d.init, m3d.jitter, m3d.weights, m3d.budget) == ("m2_distance10", True, "distance:10", "jitter")
    cpu = ci_session.replace(preset=get_preset("cpu"))
    assert all(stage_config(n, cpu).steps == 80 for n in WEIGHTING_STAGES)     # one budget for all
    assert scores.stage_label("m2_dice") == "Dice loss" and scores.stage_label("m2") == "distance"


def test_get_stage_init_seed_keeps_one_parent(tiny_session, monkeypatch):
    vol = make_volume("fibsem", (4, 48, 48), seed=0)
    calls = []
    real = experiments.train_supervised

    def counting(image, labels, config, **kwargs):
        calls.append((config.task, config.seed))
        return real(image, labels, config, **kwargs)

    monkeypatch.setattr(experiments, "train_supervised", counting)
    a = experiments.get_stage("m2", tiny_session, source=vol, seed=1, init_seed=0)
    b = experiments.get_stage("m2", tiny_session, source=vol, seed=2, init_seed=0)
    assert calls == [("multiclass", 0), ("boundary", 1), ("boundary", 2)]       # one M1
    assert a.history["fingerprint"]["init"] == b.history["fingerprint"]["init"]
    experiments.get_stage("m2", tiny_session, source=vol, seed=0)                  # default: parent seed 0
    assert calls[-1] == ("boundary", 0) and len(calls) == 4


def test_seed_scores_and_table(tiny_session, monkeypatch):
    vol = make_volume("fibsem", (4, 48, 48), seed=0)
    test = make_volume("fibsem", (4, 48, 48), seed=1)
    monkeypatch.setattr(scores, "load_domain", lambda *a, **k: vol)   # training volume of get_stage
    monkeypatch.setattr(experiments, "load_domain", lambda *a, **k: vol)
    long = scores.seed_scores(["m2_ratio2", "m2_focal"], tiny_session, seeds=[0, 1], stride=2, volume=test)
    assert list(long["stage"]) == ["m2_ratio2", "m2_ratio2", "m2_focal", "m2_focal"]
    assert list(long["seed"]) == [0, 1, 0, 1] and long.attrs["preset"] == "ci"
    assert long[scores.SEED_COLUMNS].apply(lambda c: c.between(0, 1)).all().all()
    table = scores.seed_table(long)
    assert list(table.index) == ["m2_ratio2", "m2_focal"] and (table["n"] == 2).all()
    np.testing.assert_allclose(table.loc["m2_focal", "boundary_jaccard mean"],
                               long[long.stage == "m2_focal"]["boundary_jaccard"].mean())
    with pytest.raises(ValueError, match="unknown stage"):
        scores.seed_scores(["m9"], tiny_session, volume=test)
    with pytest.raises(ValueError, match="stride"):
        scores.pixel_scores(None, test, "boundary", stride=0, device="cpu")


def _table(means, sds, n=3):
    rows = {k: {"weights": STAGES[k].weights, "n": n, "boundary_jaccard mean": m, "boundary_jaccard sd": s}
            for (k, m), s in zip(means.items(), sds)}
    table = pd.DataFrame(rows).T
    table["n"] = table["n"].astype(int)
    return table


def test_weighting_findings_weighs_differences_against_seed_noise():
    clear = _table({"m2": 0.80, "m2_ratio2": 0.70, "m2_ratio5": 0.65, "m2_ratio10": 0.60}, [0.01] * 4)
    text = scores.weighting_findings(clear, preset="cpu")
    assert "at the cpu preset" in text and "**`m2`**" in text
    assert "beats every fixed ratio by more than the seed noise" in text
    noisy = _table({"m2": 0.75, "m2_ratio2": 0.74, "m2_ratio5": 0.70, "m2_ratio10": 0.60}, [0.05] * 4)
    text = scores.weighting_findings(noisy, preset="cpu")
    assert "not by more than the seed noise" in text and "within the seed noise" in text
    lost = _table({"m2": 0.70, "m2_ratio2": 0.74, "m2_ratio5": 0.70, "m2_ratio10": 0.60}, [0.01] * 4)
    assert "scores below `m2_ratio2` by more than the seed noise" in scores.weighting_findings(lost, preset="gpu")
    tied = _table({"m2": 0.70, "m2_ratio2": 0.72, "m2_ratio5": 0.70, "m2_ratio10": 0.60}, [0.05] * 4)
    assert "no higher than `m2_ratio2`, `m2_ratio5`, but within the seed noise" in scores.weighting_findings(
        tied, preset="gpu")
    one = _table({"m2": 0.70, "m2_ratio2": 0.74}, [np.nan] * 2, n=1)
    assert "spread is unknown" in scores.weighting_findings(one, preset="ci")


def test_ratio_and_transfer_findings():
    table = pd.DataFrame({"boundary_recall": [0.9, 0.95, 0.98], "boundary_precision": [0.8, 0.7, 0.6],
                          "boundary_jaccard": [0.75, 0.7, 0.62]}, index=["m2_ratio2", "m2_ratio5", "m2_ratio10"])
    text = scores.ratio_findings(table, preset="cpu")
    assert text.startswith("At the cpu preset, from 2:1 -> 5:1 -> 10:1")
    assert "recall rises" in text and "precision falls" in text and "jaccard falls" in text
    m2 = {"val": [{"step": 40, "boundary_jaccard": 0.7}, {"step": 80, "boundary_jaccard": 0.78}]}
    scratch = {"val": [{"step": 80, "boundary_jaccard": 0.8}, {"step": 360, "boundary_jaccard": 0.85}]}
    text = scores.transfer_findings(m2, scratch, preset="cpu")
    assert "At the cpu preset" in text and "lower than the scratch model at step 80" in text
    assert "0.850, higher than the transferred one" in text


def test_experiment1_and_target_findings():
    table = pd.DataFrame({"J boundary": [0.8, 0.81], "J mitochondrion": [0.9, 0.8], "mean_jaccard": [0.88, 0.85]},
                         index=["M1", "plain"])
    text = scores.experiment1_findings(table, weighted="M1", plain="plain", preset="cpu")
    assert "at the cpu preset" in text and "higher: **M1** (by 0.030)" in text
    assert "mitochondrion (+0.100)" in text and "boundary (-0.010)" in text and "above the paper's 0.72" in text
    target = pd.DataFrame({"boundary_jaccard": [0.25, 0.43, 0.40]}, index=["m2", "m3", "m3_distance10"])
    text = scores.target_findings(target, preset="ci")
    assert "at the ci preset" in text and "Jitter raised the score from 0.250 (M2) to 0.430 (M3)" in text
    assert "0.030 below M3" in text
