"""Experiment 2's weightings over several seeds: new stages, the seed path through get_stage and
the seed table (the findings computed from it: tests/test_findings.py)."""

import numpy as np
import pytest

from emseg_tutorial.paper import scores, seeds
from emseg_tutorial.paper import stages as experiments
from emseg_tutorial.paper.stages import STAGES, WEIGHTING_STAGES, stage_config
from emseg_tutorial.presets import get_preset


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
    assert seeds.stage_label("m2_dice") == "Dice loss" and seeds.stage_label("m2") == "distance"


def test_get_stage_init_seed_keeps_one_parent(tiny_session, fibsem_tiny, monkeypatch):
    vol = fibsem_tiny
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


def test_seed_scores_and_table(tiny_session, fibsem_tiny, fibsem_tiny_test, monkeypatch):
    vol, test = fibsem_tiny, fibsem_tiny_test
    monkeypatch.setattr(seeds, "load_domain", lambda *a, **k: vol)   # training volume of get_stage
    monkeypatch.setattr(experiments, "load_domain", lambda *a, **k: vol)
    long = seeds.seed_scores(["m2_ratio2", "m2_focal"], tiny_session, seeds=[0, 1], stride=2, volume=test)
    assert list(long["stage"]) == ["m2_ratio2", "m2_ratio2", "m2_focal", "m2_focal"]
    assert list(long["seed"]) == [0, 1, 0, 1] and long.attrs["preset"] == "ci"
    assert long[seeds.SEED_COLUMNS].apply(lambda c: c.between(0, 1)).all().all()
    table = seeds.seed_table(long)
    assert list(table.index) == ["m2_ratio2", "m2_focal"] and (table["n"] == 2).all()
    np.testing.assert_allclose(table.loc["m2_focal", "boundary_jaccard mean"],
                               long[long.stage == "m2_focal"]["boundary_jaccard"].mean())
    with pytest.raises(ValueError, match="unknown stage"):
        seeds.seed_scores(["m9"], tiny_session, volume=test)
    with pytest.raises(ValueError, match="stride"):
        scores.score_slices(None, test, "boundary", stride=0, device="cpu")
