"""Experiment 3: the discriminator, the paper's adversarial step and its bookkeeping."""

import json

import numpy as np
import pytest
import torch

from emseg_tutorial._validate import InputError
from emseg_tutorial.cli import main
from emseg_tutorial.models import PatchDiscriminator, UNet2d, build
from emseg_tutorial.adapt import steps as adapt_module
from emseg_tutorial.adapt import adapt, one_hot
from emseg_tutorial.store import load_checkpoint, save_checkpoint

from helpers import tiny_unet

TINY = dict(epochs=2, steps_per_epoch=2, batch_size=2, patch=32, discriminator={"width": 4, "depth": 2})


@pytest.fixture
def volumes(adapt_volumes):
    return adapt_volumes


def test_discriminator_shapes_and_rebuild():
    d = PatchDiscriminator(in_channels=3, width=4, depth=3)
    assert d(torch.zeros(2, 3, 64, 48)).shape == (2, 1, 8, 6)
    e = build("patch_discriminator", d.init_kwargs)
    e.load_state_dict(d.state_dict())
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(d(x), e(x))
    with pytest.raises(ValueError, match="expected input"):
        d(torch.zeros(1, 2, 32, 32))


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"depth": -1}, {"norm": "layer"}, {"in_channels": 1.5}])
def test_discriminator_bad_kwargs(kwargs):
    with pytest.raises(ValueError):
        PatchDiscriminator(**kwargs)


def test_one_hot():
    idx = torch.tensor([[[0, 1], [-1, 1]]])
    oh = one_hot(idx, 2)
    assert oh.shape == (1, 2, 2, 2)
    assert torch.equal(oh[0, :, 0, 0], torch.tensor([1.0, 0.0]))
    assert torch.equal(oh[0, :, 1, 0], torch.tensor([0.0, 0.0]))  # ignored pixel


@pytest.mark.parametrize("kwargs, match", [({"method": "magic"}, "method"), ({"epochs": 0}, "epochs"),
                                           ({"lr_g": -1}, "lr_g"), ({"adv_weight": 0}, "adv_weight")])
def test_config_validation(kwargs, match, ci_adapt_config):
    with pytest.raises(ValueError, match=match):
        ci_adapt_config(**kwargs)


def test_end_to_end_history_and_snapshots(volumes, ci_adapt_config):
    src, tgt = volumes
    res = adapt(tiny_unet(), src.labels, tgt.image, ci_adapt_config(**TINY), source_val=src, target_eval=tgt,
                progress=False)
    h = res.history
    assert [e["epoch"] for e in h["epochs"]] == [0, 1, 2]
    assert len(h["train"]["loss_g"]) == len(h["train"]["loss_d"]) == 4
    assert len(res.snapshots) == 3 and res.snapshots[0].shape == (48, 48)
    assert h["epochs"][0]["target"]["boundary_jaccard"] is not None  # scored before adaptation
    for e in h["epochs"][1:]:
        assert 0 <= e["d_acc_real"] <= 1 and 0 <= e["d_acc_fake"] <= 1
        assert 0 <= e["target_entropy"] <= 1 and 0 <= e["target_boundary_fraction"] <= 1
        assert e["source_val_boundary_jaccard"] is not None
    assert h["epochs"][0]["source_label_fraction"] == pytest.approx((src.labels == 1).mean())


def test_model_argument_is_left_untouched(volumes, ci_adapt_config):
    src, tgt = volumes
    net = tiny_unet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = adapt(net, src.labels, tgt.image, ci_adapt_config(**TINY), progress=False)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in res.model.state_dict().items())


def test_discriminator_sees_one_hot_truth_as_real_and_softmax_as_fake(volumes, monkeypatch, ci_adapt_config):
    src, tgt = volumes
    seen = []
    real_step = adapt_module.discriminator_step

    def spy(disc, opt, real, fake, scaler=None):
        seen.append((real.detach().clone(), fake.detach().clone()))
        return real_step(disc, opt, real, fake, scaler)

    monkeypatch.setattr(adapt_module, "discriminator_step", spy)
    adapt(tiny_unet(), src.labels, tgt.image, ci_adapt_config(**TINY), progress=False)
    assert len(seen) == 4
    for real, fake in seen:
        assert set(torch.unique(real).tolist()) <= {0.0, 1.0}
        assert torch.allclose(real.sum(1), torch.ones_like(real.sum(1)))  # one-hot source truth
        assert torch.allclose(fake.sum(1), torch.ones_like(fake.sum(1)), atol=1e-5)
        assert ((fake > 0) & (fake < 1)).float().mean() > 0.99  # soft predictions
    # The real maps are crops of the source labels (boundary = channel 0).
    assert 0 < float(torch.cat([r[:, 0] for r, _ in seen]).mean()) < 0.5


def test_unet_update_does_not_depend_on_source_labels(volumes, ci_adapt_config):
    # With the discriminator frozen (lr_d = 0), whatever the source labels say can only reach the
    # U-Net through a path the paper's method must not have.
    src, tgt = volumes
    cfg = ci_adapt_config(**{**TINY, "lr_d": 0.0})
    shuffled = np.ascontiguousarray(src.labels[:, ::-1, ::-1][[2, 0, 1]])
    a = adapt(tiny_unet(), src.labels, tgt.image, cfg, progress=False).model.state_dict()
    b = adapt(tiny_unet(), shuffled, tgt.image, cfg, progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # ... while the discriminator, when it learns, does read them.
    cfg = ci_adapt_config(**TINY)
    da = adapt(tiny_unet(), src.labels, tgt.image, cfg, progress=False).discriminator.state_dict()
    db = adapt(tiny_unet(), shuffled, tgt.image, cfg, progress=False).discriminator.state_dict()
    assert any(not torch.equal(da[k], db[k]) for k in da)


def test_generator_step_moves_only_the_unet():
    torch.manual_seed(0)
    net, disc = tiny_unet(), PatchDiscriminator(in_channels=2, width=4, depth=2)
    d_before = {k: v.clone() for k, v in disc.state_dict().items()}
    g_before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    probs = torch.softmax(net(torch.rand(2, 1, 32, 32)), 1)
    out = adapt_module.generator_step(disc, opt, probs)
    assert out["loss_g"] > 0
    assert all(torch.equal(d_before[k], v) for k, v in disc.state_dict().items())
    assert all(p.requires_grad for p in disc.parameters())
    assert any(not torch.equal(g_before[k], v) for k, v in net.state_dict().items())


def test_same_seed_same_adaptation(volumes, ci_adapt_config):
    src, tgt = volumes
    a = adapt(tiny_unet(), src.labels, tgt.image, ci_adapt_config(**TINY), progress=False)
    b = adapt(tiny_unet(), src.labels, tgt.image, ci_adapt_config(**TINY), progress=False)
    assert a.history["train"]["loss_g"] == b.history["train"]["loss_g"]


def test_history_and_checkpoint_round_trip(volumes, tmp_path, ci_adapt_config):
    src, tgt = volumes
    res = adapt(tiny_unet(), src.labels, tgt.image, ci_adapt_config(**TINY), target_eval=tgt, progress=False)
    save_checkpoint(tmp_path / "a.pt", res.model, config=res.config.to_dict(), history=res.history)
    model, ckpt = load_checkpoint(tmp_path / "a.pt")
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(model.eval()(x), res.model.eval()(x))
    assert ckpt["history"]["train"]["loss_g"] == res.history["train"]["loss_g"]
    assert ckpt["config"]["method"] == "paper"


def test_cli_adapt(adapt_cli_files, capsys):
    tmp_path = adapt_cli_files
    save_checkpoint(tmp_path / "m1.pt", UNet2d(out_channels=4, depth=2, base_width=4))
    p = str(tmp_path)
    assert main(["adapt", "--model", f"{p}/m3.pt", "--source-labels", f"{p}/sl.tif",
                 "--target-image", f"{p}/t.tif", "--eval-labels", f"{p}/tl.tif", "--epochs", "1", "--steps", "2",
                 "--out", f"{p}/out", "--quiet"]) == 0
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert len(history["epochs"]) == 2 and history["epochs"][1]["target"] is not None
    assert load_checkpoint(tmp_path / "out" / "model.pt")[1]["config"]["adapt"]["steps_per_epoch"] == 2
    capsys.readouterr()
    assert main(["adapt", "--model", f"{p}/m1.pt", "--source-labels", f"{p}/sl.tif", "--target-image", f"{p}/t.tif",
                 "--out", f"{p}/o2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "two-class model" in err


def test_adapt_refuses_a_model_of_another_task(volumes, ci_adapt_config, tmp_path):
    src, tgt = volumes
    save_checkpoint(tmp_path / "mito.pt", tiny_unet(), config={"task": "mitochondria"})
    model = load_checkpoint(tmp_path / "mito.pt")[0]
    assert model.task == "mitochondria"  # the task its checkpoint records
    with pytest.raises(InputError, match=r"mito.pt: the model was trained for the mitochondria task, not boundary"):
        adapt(model, src.labels, tgt.image, ci_adapt_config(**TINY), progress=False)
    save_checkpoint(tmp_path / "old.pt", tiny_unet())  # a checkpoint recording no task: nothing to check
    assert not hasattr(load_checkpoint(tmp_path / "old.pt")[0], "task")
