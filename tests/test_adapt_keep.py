"""Adaptation that keeps the label-free choice and stops there: the weights of the chosen epoch
(never chosen with target labels), patience, resumption, and the command line's line."""

import pytest
import torch

from emseg_tutorial.adapt import adapt
from emseg_tutorial.adapt import loop
from emseg_tutorial.adapt.diagnostics import label_free_choice
from emseg_tutorial.adapt.state import load_adaptation_state
from emseg_tutorial.cli import main
from helpers import ci_config, tiny_unet


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def _run(vols, **fields):
    src, tgt = vols
    kw = {k: fields.pop(k) for k in ("checkpoint", "resume") if k in fields}
    sizes = dict(epochs=3, steps_per_epoch=2, batch_size=2, patch=32, report_stride=2, lr_g=1e-3,
                 discriminator={"width": 4, "depth": 2}, device="cpu")
    cfg = ci_config(**{**sizes, **fields})
    return adapt(tiny_unet(), src.labels, tgt.image, cfg, progress=False, **kw)


def test_label_free_keep_returns_the_chosen_epochs_weights(adapt_volumes):
    kept = _run(adapt_volumes, keep="label-free")
    choice = label_free_choice(kept.history["epochs"])
    assert kept.history["stop"] == {"reason": "epochs", "epoch": 3, "keep": "label-free", "kept_epoch": choice}
    # the same run cut at the chosen epoch (0: the model before adaptation) holds the same weights
    reference = tiny_unet() if choice == 0 else _run(adapt_volumes, epochs=choice).model
    assert _same(kept.model, reference)
    last = _run(adapt_volumes)
    assert last.history["stop"]["kept_epoch"] == 3 and _same(last.model, _run(adapt_volumes, epochs=3).model)


def test_patience_stops_when_no_new_choice_comes(adapt_volumes, monkeypatch):
    monkeypatch.setattr(loop, "label_free_choice", lambda epochs: 0)  # every adapted epoch disqualified
    run = _run(adapt_volumes, keep="label-free", patience=1)
    assert run.history["stop"] == {"reason": "patience", "epoch": 1, "keep": "label-free", "kept_epoch": 0}
    assert [e["epoch"] for e in run.history["epochs"]] == [0, 1]
    assert _same(run.model, tiny_unet())


def test_a_resumed_label_free_run_equals_an_uninterrupted_one(adapt_volumes, tmp_path):
    full = _run(adapt_volumes, keep="label-free")
    state = tmp_path / "state.pt"
    _run(adapt_volumes, keep="label-free", epochs=1, checkpoint=state)
    assert load_adaptation_state(state)["kept"]["epoch"] in (0, 1)
    resumed = _run(adapt_volumes, keep="label-free", checkpoint=state, resume=load_adaptation_state(state))
    assert resumed.history["stop"] == full.history["stop"]
    assert _same(resumed.model, full.model)


@pytest.mark.parametrize("fields, message", [({"keep": "best"}, "keep must be one of"),
                                             ({"patience": 2}, "needs keep='label-free'"),
                                             ({"keep": "label-free", "patience": 0}, "patience must be an integer")])
def test_bad_keep_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ci_config(**fields)


def test_cli_keeps_the_label_free_choice_and_says_so(adapt_cli_files, capsys):
    p = adapt_cli_files
    args = ["adapt", "--model", f"{p}/m3.pt", "--source-labels", f"{p}/sl.tif", "--target-image", f"{p}/t.tif",
            "--method", "paper", "--quiet"]
    assert main(args + ["--out", f"{p}/a"]) == 0
    out = capsys.readouterr().out
    assert "label-free choice" in out or "the model before adaptation" in out
    assert main(args + ["--out", f"{p}/b", "--keep", "last"]) == 0
    assert "kept the last epoch" in capsys.readouterr().out
    assert main(args + ["--out", f"{p}/c", "--keep", "last", "--patience", "1"]) == 2
    assert "--patience" in capsys.readouterr().err
