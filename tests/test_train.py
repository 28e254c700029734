"""Supervised training, its config, checkpoints and the cached paper stages."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from emseg_tutorial.paper import stages as experiments
from emseg_tutorial.session import from_env
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.data.volume import Volume
from emseg_tutorial.models import UNet2d
from emseg_tutorial.presets import get_preset
from emseg_tutorial.paper.stages import budget_steps, train_config as experiment_config
from emseg_tutorial.store import load_checkpoint, save_checkpoint, save_json
from emseg_tutorial.train import split_slices, train_supervised
from emseg_tutorial.train.supervised import _initial_model

TINY_MODEL = {"depth": 2, "base_width": 4}


@pytest.fixture(scope="module")
def vol():
    return make_volume("fibsem", (4, 48, 48), seed=0)


def _config(**kwargs):
    """A tiny run built as the library builds one: from the ci preset, its sizes shrunk by name."""
    base = dict(task="multiclass", weights="entropy", steps=4, batch_size=2, patch=32, val_every=2,
                model=dict(TINY_MODEL), device="cpu")
    return experiment_config(get_preset("ci"), **{**base, **kwargs})


def _train(vol, **kwargs):
    init = kwargs.pop("init", None)
    return train_supervised(vol.image, vol.labels, _config(**kwargs), init=init, progress=False)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def run(vol):
    return _train(vol, steps=5)


# --------------------------------------------------------------------------- train_supervised


def test_history_has_every_step_and_validation(run):
    h = run.history
    assert h["train"]["step"] == [1, 2, 3, 4, 5]
    assert len(h["train"]["loss"]) == 5 and all(math.isfinite(v) and v > 0 for v in h["train"]["loss"])
    assert [v["step"] for v in h["val"]] == [2, 4, 5]        # every val_every and at the end
    assert h["val_slices"] == [3]                            # ceil(0.15 * 4) = 1, the last slice
    for v in h["val"]:
        assert {"mean_jaccard", "jaccard", "boundary_jaccard", "boundary_f1"} <= set(v)
        assert set(v["jaccard"]) == {"boundary", "cytoplasm", "mitochondria", "glia"}
    assert h["seconds"] > 0
    assert isinstance(run.model, UNet2d) and run.model.head.out_channels == 4
    assert next(run.model.parameters()).device.type == "cpu"
    json.dumps(run.config.to_dict())                         # the config is plain data


def test_same_seed_same_run_different_seed_different(vol, run):
    again = _train(vol, steps=5)
    assert again.history["train"]["loss"] == run.history["train"]["loss"]
    assert _same_state(_state(again.model), _state(run.model))
    other = _train(vol, steps=2, seed=1)
    assert other.history["train"]["loss"] != run.history["train"]["loss"][:2]


def test_weights_scheme_changes_the_loss(vol):
    losses = {w: _train(vol, task="boundary", weights=w, steps=1).history["train"]["loss"][0]
              for w in ("none", "ratio:10", "distance")}
    # same seed, same first batch and initial weights: only the per-pixel weights differ
    assert len({round(v, 6) for v in losses.values()}) == 3


def _first_loss(vol, loss):
    return _train(vol, task="boundary", weights="none", loss=loss, steps=1).history["train"]["loss"][0]


def test_loss_ce_plus_dice_adds_a_dice_term(vol):
    ce, both = _first_loss(vol, "ce"), _first_loss(vol, "ce+dice")
    # same seed, same first batch and network: the sum is CE plus a Dice loss in (0, 1]
    assert 0 < both - ce <= 1


def test_loss_dice_alone_is_only_dice(vol):
    ce, dice, both = (_first_loss(vol, loss) for loss in ("ce", "dice", "ce+dice"))
    assert 0 < dice <= 1
    assert both == pytest.approx(ce + dice, rel=1e-5)


def test_loss_focal_is_below_ce_on_the_same_batch(vol):
    ce, focal = _first_loss(vol, "ce"), _first_loss(vol, "focal")
    # same first batch and network; (1 - p)^2 < 1 on every pixel
    assert 0 < focal < ce


def test_loss_decreases_on_an_easy_volume(vol):
    run = _train(vol, task="boundary", weights="none", steps=30, lr=1e-2, val_slices=0)
    loss = run.history["train"]["loss"]
    assert len(loss) == 30 and run.history["val"] == [] and run.history["val_slices"] == []
    assert np.mean(loss[-5:]) < np.mean(loss[:5])


def test_jitter_run_and_boundary_task(vol):
    run = _train(vol, task="boundary", weights="distance", jitter=True, steps=2)
    assert run.model.head.out_channels == 2
    assert set(run.history["val"][-1]["jaccard"]) == {"boundary", "non-boundary"}


def test_init_model_replaces_head_and_keeps_the_rest(vol):
    torch.manual_seed(3)
    m1 = UNet2d(out_channels=4, **TINY_MODEL)
    before = _state(m1)
    start = _initial_model(_config(task="boundary", weights="distance"), m1)
    assert start is not m1 and start.head.out_channels == 2 and start.init_kwargs["out_channels"] == 2
    s = _state(start)
    body = [k for k in before if not k.startswith("head.")]
    assert body and all(torch.equal(s[k], before[k]) for k in body)
    assert s["head.weight"].shape == (2, 4, 1, 1)
    # an independent copy: changing it leaves the init model alone
    with torch.no_grad():
        next(start.parameters()).add_(1.0)
    assert _same_state(_state(m1), before)
    # same class count: nothing replaced
    assert _same_state(_state(_initial_model(_config(task="multiclass"), m1)), before)

    run = _train(vol, task="boundary", weights="distance", steps=2, init=m1)
    assert _same_state(_state(m1), before)                           # argument untouched
    assert m1.init_kwargs["out_channels"] == 4 and m1.head.out_channels == 4
    assert run.model.head.out_channels == 2 and run.model.init_kwargs["out_channels"] == 2
    trained = _state(run.model)
    assert any(not torch.equal(trained[k], before[k]) for k in body)  # it did train


@pytest.mark.parametrize(
    "kwargs, match",
    [({"task": "semantic"}, "task"), ({"weights": "ratio:-1"}, "ratio"), ({"weights": "ratio:x"}, "ratio"),
     ({"weights": "foo"}, "weights"), ({"weights": "ratio"}, "weights"), ({"loss": "mse"}, "loss"),
     ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"), ({"val_every": 0}, "val_every"),
     ({"lr": 0}, "lr"), ({"lr": -1e-4}, "lr"), ({"val_slices": 1.0}, "val_slices"),
     ({"val_slices": -0.1}, "val_slices")],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _config(**kwargs)


@pytest.mark.parametrize(
    "n, fraction, val",
    [(1, 0.5, []), (10, 0.0, []), (10, 0.15, [8, 9]), (10, 0.1, [9]), (4, 0.15, [3]), (2, 0.9, [1]),
     (3, 0.99, [1, 2])],
)
def test_split_slices(n, fraction, val):
    train, validation = split_slices(n, fraction)
    assert validation.tolist() == val
    assert train.tolist() == list(range(n - len(val)))   # the last slices validate, the rest train


def test_bad_training_data_raises(vol):
    with pytest.raises(ValueError, match="shape"):
        train_supervised(vol.image, vol.labels[:, :40], _config(), progress=False)
    bad = vol.labels.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match="7"):
        train_supervised(vol.image, bad, _config(), progress=False)


def test_experiment_config_sizes_from_a_preset():
    preset = get_preset("ci")
    cfg = experiment_config(preset, task="multiclass", weights="entropy")
    assert cfg.steps == budget_steps(preset, "exp1") == 30
    assert (cfg.batch_size, cfg.patch, cfg.val_every) == (preset.batch_size, preset.patch, preset.val_every)
    assert cfg.model == preset.model and cfg.model is not preset.model
    cfg.model["depth"] = 99
    assert preset.model["depth"] == 3
    assert experiment_config(preset, task="boundary", weights="distance", init=True).steps == budget_steps(preset, "exp2")
    assert experiment_config(preset, task="boundary", weights="distance").steps == budget_steps(preset, "exp2_scratch")
    jit = experiment_config(preset, task="boundary", weights="distance", init=True, jitter=True)
    assert jit.jitter and jit.steps == budget_steps(preset, "jitter")
    other = experiment_config(preset, task="boundary", weights="ratio:5", steps=7, seed=3, lr=1e-3)
    assert (other.steps, other.seed, other.lr, other.weights) == (7, 3, 1e-3, "ratio:5")
    with pytest.raises(ValueError):
        experiment_config(preset, task="boundary", weights="ratio:0")


def test_experiment_config_rejects_zero_steps():
    with pytest.raises(ValueError, match="steps"):
        experiment_config(get_preset("ci"), task="multiclass", weights="entropy", steps=0)


# --------------------------------------------------------------------------- checkpoints


class _NotPlainData:
    """A custom class: pickling it into a checkpoint must make weights_only loading refuse."""


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = UNet2d(out_channels=2, depth=2, base_width=4)
    model.train()
    model(torch.randn(2, 1, 24, 24))          # move the batch-norm running statistics off their start
    model.eval()
    x = torch.randn(3, 1, 24, 40)
    with torch.no_grad():
        expected = model(x)
    config = {"task": "boundary", "shape": (4, 48, 48), "lr": np.float64(1e-3), "bad": float("nan")}
    history = {"train": {"loss": [1.0, float("inf")]}, "n": np.int64(3)}
    path = tmp_path / "sub" / "m.pt"
    save_checkpoint(path, model, config=config, history=history)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]   # no temp files left
    loaded, ckpt = load_checkpoint(path)
    assert isinstance(loaded, UNet2d) and loaded.init_kwargs == model.init_kwargs
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    assert _same_state(_state(loaded), _state(model))
    assert ckpt["config"] == {"task": "boundary", "shape": [4, 48, 48], "lr": 1e-3, "bad": None}
    assert ckpt["history"] == {"train": {"loss": [1.0, None]}, "n": 3}
    assert type(ckpt["config"]["lr"]) is float and type(ckpt["history"]["n"]) is int


def test_checkpoint_and_json_accept_numpy_arrays_in_history(tmp_path):
    history = {"curve": np.array([0.5, np.nan]), "slices": np.arange(2)}
    save_checkpoint(tmp_path / "m.pt", UNet2d(out_channels=2, depth=1, base_width=2), history=history)
    expected = {"curve": [0.5, None], "slices": [0, 1]}
    assert load_checkpoint(tmp_path / "m.pt")[1]["history"] == expected
    save_json(tmp_path / "h.json", history)
    assert json.loads((tmp_path / "h.json").read_text()) == expected


def test_checkpoint_loads_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(path, UNet2d(out_channels=2, depth=1, base_width=2))
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(path)
    assert seen == [True]


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    model = UNet2d(out_channels=2, depth=1, base_width=2)
    path = tmp_path / "evil.pt"
    torch.save({"model": model.init_kwargs, "state": model.state_dict(), "config": {"x": _NotPlainData()}}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(path)


def test_missing_garbage_and_foreign_checkpoints_raise(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ValueError, match="nope.pt"):
        load_checkpoint(missing)
    with pytest.raises(ValueError, match=str(tmp_path.name)):
        load_checkpoint(tmp_path)                               # a folder is not a checkpoint file
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\x00\x01\x02" * 10)
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt.*not an emseg-tutorial checkpoint"):
        load_checkpoint(foreign)
    mismatched = tmp_path / "mismatch.pt"
    small = UNet2d(out_channels=2, depth=1, base_width=2)
    torch.save({"model": {**small.init_kwargs, "base_width": 4}, "state": small.state_dict()}, mismatched)
    with pytest.raises(ValueError, match="mismatch.pt: its weights do not fit the network"):
        load_checkpoint(mismatched)
    unknown = tmp_path / "unknown.pt"
    torch.save({"model": {"depth": 1, "colour": "red"}, "state": {}}, unknown)
    with pytest.raises(ValueError, match="unknown.pt"):
        load_checkpoint(unknown)


def test_save_json_nan_to_null_and_atomic(tmp_path):
    path = tmp_path / "out" / "history.json"
    save_json(path, {"a": float("nan"), "b": [1.5, float("-inf")], "c": (1, 2), "d": np.float32(0.5),
                     "e": {"f": np.int64(2)}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": [1, 2], "d": 0.5, "e": {"f": 2}}
    save_json(path, {"a": 1})                                    # overwrite
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["history.json"]
    with pytest.raises(TypeError):
        save_json(tmp_path / "out" / "bad.json", {"x": object()})
    assert [p.name for p in path.parent.iterdir()] == ["history.json"]   # nothing half-written


# --------------------------------------------------------------------------- cached paper stages


@pytest.fixture
def stage_env(tmp_path, monkeypatch, vol):
    """A tiny "ci" preset, runs saved in tmp_path, and a counter of training calls."""
    preset = dataclasses.replace(get_preset("ci"), model=dict(TINY_MODEL), patch=32, batch_size=2,
                                 steps_per_iteration=0.025, val_every=100)
    session = from_env(preset=preset, device="cpu").replace(runs=tmp_path)
    calls = []
    real = experiments.train_supervised

    def counting(image, labels, config, **kwargs):
        calls.append(config.task)
        return real(image, labels, config, **kwargs)

    monkeypatch.setattr(experiments, "train_supervised", counting)
    source = Volume(vol.image, vol.labels, vol.voxel_size, name=vol.name)
    return session, source, calls, tmp_path


def test_get_stage_trains_once_then_reuses(stage_env):
    session, source, calls, runs = stage_env
    preset = session.preset
    first = experiments.get_stage("m2", session, source=source)
    assert calls == ["multiclass", "boundary"]                        # m1 first, then m2 from it
    assert sorted(p.name for p in (runs / "ci").iterdir()) == ["m1-seed0.pt", "m2-seed0.pt"]
    assert first.history["stage"] == "m2" and first.model.head.out_channels == 2
    assert first.config.steps == budget_steps(preset, "exp2")

    again = experiments.get_stage("m2", session, source=source)
    assert calls == ["multiclass", "boundary"]                        # nothing trained
    assert _same_state(_state(again.model), _state(first.model))
    assert again.history["fingerprint"] == first.history["fingerprint"]
    assert again.history["train"]["loss"] == first.history["train"]["loss"]

    experiments.get_stage("m2", session, source=source, retrain=True)
    assert calls == ["multiclass", "boundary", "boundary"]            # m2 again, m1 reused


def test_get_stage_changed_config_or_volume_retrains(stage_env, vol):
    session, source, calls, _ = stage_env
    preset = session.preset
    experiments.get_stage("m1", session, source=source)
    assert len(calls) == 1
    longer = dataclasses.replace(preset, steps_per_iteration=0.03)
    experiments.get_stage("m1", session.replace(preset=longer), source=source)
    assert len(calls) == 2                                            # config changed
    smaller = Volume(vol.image[:3], vol.labels[:3], vol.voxel_size, name=vol.name)
    experiments.get_stage("m1", session.replace(preset=longer), source=smaller)
    assert len(calls) == 3                                            # volume shape changed
    other = make_volume("fibsem", (3, 48, 48), seed=1)
    experiments.get_stage("m1", session.replace(preset=longer), source=other)
    assert len(calls) == 4                                            # another volume
    experiments.get_stage("m1", session.replace(preset=longer), source=other, seed=1)
    assert len(calls) == 5                                            # another seed


def test_get_stage_changed_pixels_retrain(stage_env):
    session, source, calls, _ = stage_env
    preset = session.preset
    experiments.get_stage("m1", session, source=source)
    edited = Volume(255 - source.image, source.labels, source.voxel_size, name=source.name)
    experiments.get_stage("m1", session, source=edited)
    assert len(calls) == 2


def test_get_stage_continues_an_interrupted_stage(stage_env, tmp_path):
    session, source, calls, runs = stage_env
    uninterrupted = experiments.get_stage("m1", session.replace(runs=tmp_path / "other"), source=source)
    real = experiments.train_supervised

    def interrupted(image, labels, config, **kwargs):          # the session drops after 2 of 3 steps
        real(image, labels, dataclasses.replace(config, steps=2), **kwargs)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiments, "train_supervised", interrupted)
        with pytest.raises(KeyboardInterrupt):
            experiments.get_stage("m1", session, source=source)
    assert len(list((runs / "ci").glob("m1-seed0-*.state.pt"))) == 1
    resumed = experiments.get_stage("m1", session, source=source)
    assert resumed.history["train"]["loss"] == uninterrupted.history["train"]["loss"]
    assert _same_state(_state(resumed.model), _state(uninterrupted.model))
    assert not list((runs / "ci").glob("*.state.pt"))          # done: the state is removed


# --------------------------------------------------------------------------- torch.compile


def test_compile_that_fails_at_once_falls_back_to_eager(vol, monkeypatch):
    def broken(model, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no compiler here"):
        run = train_supervised(vol.image, vol.labels, _config(steps=2), progress=False, compile=True)
    eager = train_supervised(vol.image, vol.labels, _config(steps=2), progress=False)
    assert run.history["train"]["loss"] == eager.history["train"]["loss"]


def test_compile_that_fails_at_the_first_step_falls_back_to_eager_once(vol, monkeypatch):
    calls = []

    class FailsWhenCalled(torch.nn.Module):  # what a compiled model that cannot run looks like
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            calls.append(1)
            raise RuntimeError("inductor: backend compiler failed")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: FailsWhenCalled(model))
    with pytest.warns(RuntimeWarning, match="backend compiler failed") as caught:
        run = train_supervised(vol.image, vol.labels, _config(steps=3), progress=False, compile=True)
    assert len(calls) == 1 and len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    eager = train_supervised(vol.image, vol.labels, _config(steps=3), progress=False)
    assert run.history["train"]["loss"] == eager.history["train"]["loss"]
    sa, sb = run.model.state_dict(), eager.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_compiled_model_trains_the_model_it_wraps(vol, monkeypatch):
    wrapped = []

    def fake_compile(model, **kwargs):  # stands for torch.compile: another module, same parameters
        wrapped.append(model)
        return torch.nn.Sequential(model)

    monkeypatch.setattr(torch, "compile", fake_compile)
    run = train_supervised(vol.image, vol.labels, _config(steps=2), progress=False, compile=True)
    eager = train_supervised(vol.image, vol.labels, _config(steps=2), progress=False)
    assert len(wrapped) == 1 and run.history["train"]["loss"] == eager.history["train"]["loss"]
    assert run.model.state_dict().keys() == eager.model.state_dict().keys()   # no wrapper prefix saved


def test_a_named_jitter_is_part_of_the_config():
    from emseg_tutorial.paper.stages import STAGES, stage_config

    session = from_env(preset="ci", device="cpu")
    preset = session.preset
    m3, unlike = stage_config("m3", session), stage_config("m3_unlike", session)
    assert m3.jitter is True and unlike.jitter == "unlike" and STAGES["m3_unlike"].init == "m2"
    assert unlike.steps == m3.steps == budget_steps(preset, "jitter")
    assert m3.to_dict() != unlike.to_dict()  # so the two checkpoints and cache keys differ
    with pytest.raises(ValueError, match="jitter must be"):
        experiment_config(preset, task="boundary", weights="distance", jitter="sideways")


def test_a_reused_stage_says_what_and_from_where(stage_env, capsys):
    session, source, calls, runs = stage_env
    session = session.replace(progress=True)
    experiments.get_stage("m1", session, source=source)
    assert calls == ["multiclass"] and "reused" not in capsys.readouterr().out
    experiments.get_stage("m1", session, source=source)
    assert calls == ["multiclass"]
    assert capsys.readouterr().out == f"reused m1 (seed 0) from {runs / session.preset.name / 'm1-seed0.pt'}\n"


def test_a_stage_says_its_own_reuse_only_not_its_parents(stage_env, capsys):
    """Bars off (EMSEG_PROGRESS=0), the reuse is still said; M1, read back to fingerprint M2, is not."""
    session, source, calls, runs = stage_env
    session = session.replace(progress=False)
    experiments.get_stage("m2", session, source=source)
    assert "reused" not in capsys.readouterr().out
    experiments.get_stage("m2", session, source=source)
    assert capsys.readouterr().out == f"reused m2 (seed 0) from {runs / session.preset.name / 'm2-seed0.pt'}\n"


def test_edited_source_retrains_the_stage(stage_env, edit_source, capsys):
    session, source, calls, _ = stage_env
    session = session.replace(progress=True)
    first = experiments.get_stage("m1", session, source=source)
    edit_source("emseg_tutorial.losses")
    again = experiments.get_stage("m1", session, source=source)
    assert calls == ["multiclass", "multiclass"]
    assert again.history["fingerprint"]["source"] != first.history["fingerprint"]["source"]
    assert "reused" not in capsys.readouterr().out
    experiments.get_stage("m1", session, source=source)             # the retrained run is reused
    assert calls == ["multiclass", "multiclass"] and "reused m1 (seed 0)" in capsys.readouterr().out
