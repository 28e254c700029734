"""Training to convergence: a time budget, patience, a plateau schedule, the best weights kept,
and a resumed budgeted run that equals an uninterrupted one (bit for bit on the CPU)."""

import argparse

import pytest
import torch

from emseg_tutorial import cli
from emseg_tutorial.cli import build_parser, main
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.labels import for_task
from emseg_tutorial.paper.stages import train_config
from emseg_tutorial.presets import get_preset
from emseg_tutorial.store import load_training_state
from emseg_tutorial.train import (CONVERGE, EarlyStopping, TrainConfig, converge_config, stop_reason_text,
                                  train_supervised, validate, with_budget)
from emseg_tutorial.data.normalize import Normalizer

TINY = {"depth": 2, "base_width": 4, "norm": "batch"}


@pytest.fixture(scope="module")
def vol():
    return make_volume("fibsem", (6, 48, 48), seed=0)


def _config(steps, **kw):
    base = dict(steps=steps, batch_size=2, patch=32, val_every=2, model=dict(TINY), device="cpu", lr=5e-3)
    return TrainConfig(task="boundary", weights="distance", **{**base, **kw})


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_patience_stops_the_run_and_says_why(vol):
    run = train_supervised(vol.image, vol.labels, _config(200, val_every=1, patience=2, lr=1e-12), progress=False)
    stop = run.history["stop"]
    # a learning rate of 1e-12 changes nothing: the first validation is the best, two more without gain stop it
    assert stop["reason"] == "patience" and stop["step"] == 3 and stop["best_step"] == 1
    assert len(run.history["train"]["step"]) == 3
    assert "no gain of 0.001 in mean Jaccard for 2 validations" in stop_reason_text(stop, run.config)


def test_keep_best_returns_the_best_validations_weights(vol):
    cfg = _config(16, val_every=2, patience=50, keep_best=True, lr=2e-2)
    run = train_supervised(vol.image, vol.labels, cfg, progress=False)
    stop, val = run.history["stop"], run.history["val"]
    best = max(val, key=lambda v: v["mean_jaccard"])
    assert stop["kept_step"] == stop["best_step"] == best["step"]
    z = run.history["val_slices"]
    labels = for_task(vol.labels, "boundary")
    again = validate(run.model, vol.image[z], labels[z], "boundary", torch.device("cpu"),
                     normalizer=Normalizer.from_volume(vol.image))
    assert again["mean_jaccard"] == pytest.approx(best["mean_jaccard"], abs=1e-9)
    if best["step"] != val[-1]["step"]:  # the kept weights are not the last ones
        last = train_supervised(vol.image, vol.labels, TrainConfig(**{**cfg.to_dict(), "keep_best": False}),
                                progress=False)
        assert not _same_weights(last.model, run.model)


def test_plateau_schedule_halves_the_learning_rate(vol):
    run = train_supervised(vol.image, vol.labels, _config(8, val_every=1, patience=4, lr=1e-7,
                                                          lr_schedule="plateau"), progress=False)
    lrs = [v["lr"] for v in run.history["val"]]
    assert lrs[0] == 1e-7 and lrs[-1] == 5e-8


def test_the_budget_stops_the_run(vol):
    run = train_supervised(vol.image, vol.labels, _config(100_000, budget=1e-9), progress=False)
    stop = run.history["stop"]
    assert stop["reason"] == "budget" and stop["step"] == 1
    assert run.history["val"][-1]["step"] == 1  # a last validation when the budget ends


def test_a_resumed_budgeted_run_equals_an_uninterrupted_one(vol, tmp_path):
    kw = dict(budget=60.0, patience=3, lr_schedule="plateau", keep_best=True, val_every=2)
    full = train_supervised(vol.image, vol.labels, _config(12, **kw), progress=False)
    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(4, **kw), progress=False, checkpoint=state)
    assert load_training_state(state)["extra"]["stopper"]["best_step"] is not None
    resumed = train_supervised(vol.image, vol.labels, _config(12, **kw), progress=False, checkpoint=state,
                               resume=load_training_state(state))
    assert resumed.history["train"]["loss"] == full.history["train"]["loss"]
    assert [v["mean_jaccard"] for v in resumed.history["val"]] == [v["mean_jaccard"] for v in full.history["val"]]
    assert [v["lr"] for v in resumed.history["val"]] == [v["lr"] for v in full.history["val"]]
    assert resumed.history["stop"] == full.history["stop"]
    assert _same_weights(resumed.model, full.model)


def test_a_run_stopped_by_patience_resumes_to_nothing_more(vol, tmp_path):
    state = tmp_path / "state.pt"
    cfg = _config(50, val_every=1, patience=2, lr=1e-12, keep_best=True)
    first = train_supervised(vol.image, vol.labels, cfg, progress=False, checkpoint=state)
    again = train_supervised(vol.image, vol.labels, _config(60, val_every=1, patience=2, lr=1e-12, keep_best=True),
                             progress=False, resume=load_training_state(state))
    assert again.history["train"]["step"] == first.history["train"]["step"]
    assert _same_weights(again.model, first.model)


def test_a_state_of_an_older_version_resumes(vol, tmp_path):
    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(2), progress=False, checkpoint=state)
    saved = load_training_state(state)
    for key in ("budget", "patience", "lr_schedule", "keep_best"):
        del saved["config"][key]
    del saved["extra"]
    run = train_supervised(vol.image, vol.labels, _config(4), progress=False, resume=saved)
    assert run.history["train"]["step"] == [1, 2, 3, 4]


def test_a_validation_volume_of_its_own(vol):
    other = make_volume("fibsem", (2, 48, 48), seed=5)
    run = train_supervised(vol.image, vol.labels, _config(2), progress=False, val_image=other.image,
                           val_labels=other.labels)
    assert run.history["val_slices"] == [] and len(run.history["val"]) == 1
    with pytest.raises(ValueError, match="^val_labels: give both"):
        train_supervised(vol.image, vol.labels, _config(2), progress=False, val_image=other.image)


@pytest.mark.parametrize("fields, message", [
    ({"budget": 0}, "budget must be a number of minutes > 0"),
    ({"budget": float("inf")}, "budget must be a number of minutes > 0"),
    ({"patience": 0}, "patience must be >= 1"),
    ({"lr_schedule": "cosine"}, "lr_schedule must be one of"),
])
def test_bad_stopping_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        _config(2, **fields)


def test_patience_without_validation_is_refused(vol):
    with pytest.raises(ValueError, match="patience and keep_best need validation data"):
        train_supervised(vol.image, vol.labels, _config(2, patience=2, val_slices=0), progress=False)


def test_early_stopping_round_trips_its_state():
    stop = EarlyStopping(patience=3)
    stop.update(1, 0.5)
    stop.update(2, 0.4)
    assert EarlyStopping.from_state(stop.state_dict()) == stop


def test_convergence_sizes_by_device():
    cpu, gpu = converge_config("cpu", task="boundary", weights="none"), converge_config("cuda", task="boundary",
                                                                                          weights="none")
    assert (cpu.patch, cpu.budget) == (CONVERGE["cpu"].patch, CONVERGE["cpu"].budget)
    assert (gpu.patch, gpu.model["base_width"]) == (CONVERGE["gpu"].patch, CONVERGE["gpu"].model["base_width"])
    assert cpu.keep_best and cpu.lr_schedule == "plateau"
    preset = with_budget(train_config(get_preset("cpu"), task="boundary", weights="none"), 3, steps=500)
    assert (preset.patch, preset.budget, preset.steps) == (get_preset("cpu").patch, 3.0, 500)


def _args(*extra):
    return build_parser().parse_args(["train", "--image", "i.tif", "--labels", "l.tif", "--task", "boundary",
                                      "--weights", "none", "--out", "o", *extra])


def test_cli_trains_to_convergence_unless_a_preset_or_steps_is_chosen(monkeypatch):
    monkeypatch.delenv("EMSEG_PRESET", raising=False)
    session = cli._session(_args())
    default = cli._train_config(_args(), session)
    assert default.budget == CONVERGE["cpu"].budget and default.patch == CONVERGE["cpu"].patch
    assert cli._train_config(_args("--budget", "2", "--steps", "50"), session).steps == 50
    fixed = cli._train_config(_args("--steps", "7"), session)
    assert fixed.budget is None and fixed.steps == 7
    monkeypatch.setenv("EMSEG_PRESET", "ci")
    ci = cli._session(_args())
    assert cli._train_config(_args(), ci).budget is None  # the preset's fixed steps
    budgeted = cli._train_config(_args("--budget", "1.5"), ci)
    assert (budgeted.budget, budgeted.patch) == (1.5, get_preset("ci").patch)


def test_cli_budget_prints_why_it_stopped(tmp_path, capsys):
    v = make_volume("fibsem", (6, 64, 64), seed=0)
    write_volume(tmp_path / "i.tif", v.image)
    write_volume(tmp_path / "l.tif", v.labels)
    code = main(["train", "--image", str(tmp_path / "i.tif"), "--labels", str(tmp_path / "l.tif"), "--task",
                 "boundary", "--weights", "none", "--budget", "0.0001", "--out", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "the time budget of 0.0001 min was spent" in out and "after 1 steps" in out


def test_cli_val_image_needs_val_labels(tmp_path, capsys):
    code = main(["train", "--image", "i.tif", "--labels", "l.tif", "--task", "boundary", "--weights", "none",
                 "--val-image", "v.tif", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--val-image needs --val-labels" in err


def test_a_foreground_task_stops_on_its_foreground_iou(vol):
    cfg = TrainConfig(task="mitochondria", weights="none", steps=6, batch_size=2, patch=32, val_every=1,
                      model=dict(TINY), device="cpu", lr=2e-2, patience=50, keep_best=True)
    run = train_supervised(vol.image, vol.labels, cfg, progress=False)
    stop, val = run.history["stop"], run.history["val"]
    replay = EarlyStopping(None)  # the record the foreground IoUs make (not the two-class mean Jaccard)
    for v in val:
        replay.update(v["step"], v["foreground_iou"])
    assert stop["score"] == "foreground_iou" and stop["best_foreground_iou"] == replay.best
    assert stop["best_step"] == stop["kept_step"] == replay.best_step
    assert "validation foreground IoU" in stop_reason_text(stop, cfg)
