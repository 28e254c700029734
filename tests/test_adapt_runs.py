"""Chapter 5 and 6 runs that survive a disconnect: reused when finished, continued when cut short."""

import dataclasses

import pytest
import torch

from emseg_tutorial.adapt import loop, registry
from emseg_tutorial.paper import comparison, runs as saved, stages
from emseg_tutorial.presets import ComparisonSize, get_preset
from emseg_tutorial.session import from_env
from emseg_tutorial.store import plain_data

TINY = dataclasses.replace(
    get_preset("ci"), source_shape=(6, 48, 48), target_shape=(4, 48, 48),
    model={"depth": 2, "base_width": 4, "norm": "batch"}, patch=32, batch_size=2, steps_per_iteration=0.025,
    val_every=100, adapt_epochs=2, adapt_steps_per_epoch=2, discriminator={"width": 4, "depth": 2, "norm": None},
    comparison=ComparisonSize(seeds=2, epochs=2, steps_per_epoch=2, batch_size=2, lr_g=1e-4, report_stride=2,
                              eval_stride=2))


def _session(folder):
    return from_env(preset=TINY, device="cpu").replace(runs=folder, progress=False)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _same_epochs(a, b):
    return plain_data(a) == plain_data(b)


def _drop_after_epoch(monkeypatch, epoch=1, seed=None):
    """The session drops right after ``epoch`` was saved (of the run with ``seed``, if given)."""
    real = loop.save_adaptation_state

    def save_then_drop(path, ctx, **kwargs):
        real(path, ctx, **kwargs)
        if kwargs["epoch"] == epoch and seed in (None, ctx.config.seed):
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_adaptation_state", save_then_drop)


def _no_training(monkeypatch):
    def refuse(ctx):
        raise AssertionError("trained again instead of reading the saved run")

    for name, record in registry.METHOD_RECORDS.items():
        if record.trains:
            monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(record, step=refuse))


def test_run_adaptation_interrupted_resumes_to_the_uninterrupted_result_then_is_reused(tmp_path):
    full = stages.run_adaptation(_session(tmp_path / "a"), "paper")
    session = _session(tmp_path / "b")
    with pytest.MonkeyPatch.context() as mp:
        _drop_after_epoch(mp, epoch=1)
        with pytest.raises(KeyboardInterrupt):
            stages.run_adaptation(session, "paper")
    states = list((tmp_path / "b" / TINY.name / "adapt").glob("paper-seed0-*.state.pt"))
    assert len(states) == 1 and saved.load_adaptation_state(states[0])["epoch"] == 1

    resumed = stages.run_adaptation(session, "paper")
    assert _same_weights(resumed.model, full.model) and _same_weights(resumed.discriminator, full.discriminator)
    assert resumed.history["train"] == full.history["train"]
    assert _same_epochs(resumed.history["epochs"], full.history["epochs"])
    assert all((a == b).all() for a, b in zip(resumed.snapshots, full.snapshots))

    with pytest.MonkeyPatch.context() as mp:
        _no_training(mp)
        again = stages.run_adaptation(session, "paper")
    assert _same_weights(again.model, full.model)
    assert _same_epochs(again.history["epochs"], full.history["epochs"])
    assert len(again.snapshots) == TINY.adapt_epochs + 1

    other = stages.run_adaptation(session, "paper", seed=1)   # another seed: another unit, trained
    assert not _same_weights(other.model, full.model)
    assert len(list(states[0].parent.glob("paper-seed*.state.pt"))) == 2


def test_compare_resumes_each_method_and_seed_and_reuses_finished_ones(tmp_path, monkeypatch):
    names = ["paper", "adabn"]
    full = comparison.compare(names, _session(tmp_path / "a"))
    assert full.reused == 0 and [(r.name, r.seed) for r in full.runs] == [("paper", 0), ("paper", 1), ("adabn", None)]
    session = _session(tmp_path / "b")
    with pytest.MonkeyPatch.context() as mp:
        _drop_after_epoch(mp, epoch=1, seed=1)              # paper seed 0 and done, seed 1 cut after epoch 1
        with pytest.raises(KeyboardInterrupt):
            comparison.compare(names, session)
    folder = tmp_path / "b" / TINY.name / "adapt"
    assert len(list(folder.glob("paper-seed0-*.run.pt"))) == 1 and not list(folder.glob("paper-seed0-*.state.pt"))
    assert len(list(folder.glob("paper-seed1-*.state.pt"))) == 1

    resumed = comparison.compare(names, session)
    assert resumed.reused == 1                              # paper seed 0; seed 1 continued, adabn run
    assert not list(folder.glob("*.state.pt"))              # finished units keep their record only
    for a, b in zip(full.runs, resumed.runs):
        assert (a.name, a.seed) == (b.name, b.seed) and _same_epochs(a.epochs, b.epochs)
        assert len(a.snapshots) == len(b.snapshots) == 1        # the last epoch's, the one drawn
        assert all((x == y).all() for x, y in zip(a.snapshots, b.snapshots))

    def refuse(*args, **kwargs):
        raise AssertionError("ran again instead of reading the saved run")

    monkeypatch.setattr(comparison, "run_method", refuse)
    again = comparison.compare(names, session)
    assert again.reused == 3
    assert comparison.comparison_table(again).equals(comparison.comparison_table(full))
    assert comparison.findings(again) == comparison.findings(full)


def test_a_changed_setting_is_another_unit_and_a_broken_record_is_rerun(tmp_path):
    session = _session(tmp_path)
    comparison.compare(["adabn"], session)
    record, = (tmp_path / TINY.name / "adapt").glob("adabn-*.run.pt")
    record.write_bytes(b"cut off")
    with pytest.warns(RuntimeWarning, match="not a readable adaptation run"):
        assert comparison.compare(["adabn"], session).reused == 0
    assert comparison.compare(["adabn"], session).reused == 1
    longer = dataclasses.replace(TINY, comparison=dataclasses.replace(TINY.comparison, report_stride=1))
    assert comparison.compare(["adabn"], session.replace(preset=longer)).reused == 0


def test_reused_adaptations_say_so_and_edited_source_runs_them_again(tmp_path, edit_source, capsys):
    session = _session(tmp_path).replace(progress=True)
    stages.run_adaptation(session, "paper")
    comparison.compare(["adabn"], session)
    capsys.readouterr()
    stages.run_adaptation(session, "paper")
    comparison.compare(["adabn"], session)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("reused")]
    state, = (tmp_path / TINY.name / "adapt").glob("paper-seed0-*.state.pt")
    record, = (tmp_path / TINY.name / "adapt").glob("adabn-*.run.pt")
    assert f"reused adaptation paper (seed 0) from {state}" in lines
    assert f"reused adabn from {record}" in lines
    assert "reused m3 (seed 0) from " + str(tmp_path / TINY.name / "m3-seed0.pt") in lines

    edit_source("emseg_tutorial.losses")
    assert comparison.compare(["adabn"], session).reused == 0
    stages.run_adaptation(session, "paper")
    assert "reused adaptation" not in capsys.readouterr().out   # the stages retrained by compare are reused
    assert len(list((tmp_path / TINY.name / "adapt").glob("paper-seed0-*.state.pt"))) == 2
