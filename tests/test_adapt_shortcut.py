"""The hard-vs-soft shortcut probe, the ablations that remove the cue, and ``conditional-paper``
(the paper's future work as written: adversarial loss only, raw image channel)."""

import numpy as np
import pytest
import torch

from emseg_tutorial.adapt import ablation_names, adapt, get_method, method_names, resolve
from emseg_tutorial.adapt import loop as adapt_loop
from emseg_tutorial.adapt import steps as adapt_steps
from emseg_tutorial.adapt.loop import step_context
from emseg_tutorial.labels import for_task
from emseg_tutorial.models import UNet2d

from helpers import ci_config, tiny_unet




TINY = dict(epochs=2, steps_per_epoch=2, batch_size=2, patch=32, mismatch_gap=2,
            discriminator={"width": 4, "depth": 2})
ADVERSARIAL = [m for m in method_names(trains=True) if get_method(m).discriminator != "none"]




def _run(adapt_volumes, method, **kwargs):
    src, tgt = adapt_volumes
    return adapt(tiny_unet(), src.labels, tgt.image, ci_config(method=method, **{**TINY, **kwargs}),
                 source_image=src.image, progress=False)


@pytest.mark.parametrize("method", ADVERSARIAL)
def test_every_adversarial_history_has_the_shortcut_probe(adapt_volumes, method):
    res = _run(adapt_volumes, method)
    for e in res.history["epochs"][1:]:
        for key in ("d_acc_target_hard", "d_acc_target_soft", "d_acc_fake"):
            assert 0 <= e[key] <= 1, key
    if get_method(method).discriminator == "pairs":
        assert 0 <= res.history["epochs"][-1]["d_acc_fake_target"] <= 1


def test_no_probe_without_a_discriminator(adapt_volumes):
    assert "d_acc_target_hard" not in _run(adapt_volumes, "selftrain", epochs=1).history["epochs"][-1]


@pytest.mark.parametrize("method", ["paper", "conditional-paper"])
def test_probe_reports_both_shares(adapt_volumes, method):
    last = _run(adapt_volumes, method, epochs=1).history["epochs"][-1]
    assert 0 <= last["d_acc_target_hard"] <= 1 and 0 <= last["d_acc_target_soft"] <= 1


@pytest.mark.parametrize("method", ["paper", "conditional"])
def test_probe_does_not_change_the_run(adapt_volumes, monkeypatch, method):
    a = _run(adapt_volumes, method)
    monkeypatch.setattr(adapt_loop, "shortcut_probe", lambda ctx: {})
    b = _run(adapt_volumes, method)
    for x, y in ((a.model, b.model), (a.discriminator, b.discriminator)):
        sa, sb = x.state_dict(), y.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


class _SoftnessJudge(torch.nn.Module):
    """Calls a map real exactly where it is one-hot (its largest class share is 1)."""

    def forward(self, x):
        return (x[:, -2:].amax(1, keepdim=True) - 0.999) * 100


def test_probe_catches_a_discriminator_that_judges_softness(adapt_volumes):
    src, tgt = adapt_volumes
    for method in ("paper", "conditional-paper"):
        config = ci_config(method=method, **TINY)
        ctx = step_context(tiny_unet(), for_task(src.labels, "boundary"), tgt.image, config, src.image,
                           torch.device("cpu"), 2)
        ctx.disc = _SoftnessJudge()
        probe = {k: float(v) for k, v in adapt_steps.shortcut_probe(ctx).items()}
        assert probe["d_acc_target_soft"] > 0.95 and probe["d_acc_target_hard"] == 0.0


def test_real_smoothing_and_hard_fake_maps(adapt_volumes):
    src, tgt = adapt_volumes
    labels = for_task(src.labels, "boundary")
    ctx = step_context(tiny_unet(), labels, tgt.image, ci_config(real_smoothing=0.1, hard_fake=True, **TINY), None,
                       torch.device("cpu"), 2)
    index = torch.tensor([[[0, 1, -1]]])
    np.testing.assert_allclose(ctx.real_maps(index)[0, :, 0].T.tolist(), [[0.95, 0.05], [0.05, 0.95], [0, 0]])
    logits = torch.randn(2, 2, 4, 4, requires_grad=True)
    probs = torch.softmax(logits, 1)
    fake = ctx.fake_maps(probs)
    assert set(torch.unique(fake.detach()).tolist()) <= {0.0, 1.0}
    assert torch.equal(fake.detach().argmax(1), probs.detach().argmax(1))
    w = torch.randn_like(probs)
    (g_st,) = torch.autograd.grad((fake * w).sum(), logits, retain_graph=True)
    (g_soft,) = torch.autograd.grad((probs * w).sum(), logits)
    torch.testing.assert_close(g_st, g_soft)  # straight through: the softmax's gradient


def test_hard_fake_discriminator_sees_one_hot_on_both_sides(adapt_volumes, monkeypatch):
    seen = []
    real_step = adapt_steps.discriminator_step

    def spy(disc, opt, real, fake, scaler=None):
        seen.append((real.detach().clone(), fake.detach().clone()))
        return real_step(disc, opt, real, fake, scaler)

    monkeypatch.setattr(adapt_steps, "discriminator_step", spy)
    _run(adapt_volumes, "paper", hard_fake=True, epochs=1)
    for real, fake in seen:
        assert set(torch.unique(real).tolist()) <= {0.0, 1.0} and set(torch.unique(fake).tolist()) <= {0.0, 1.0}
    seen.clear()
    _run(adapt_volumes, "paper", real_smoothing=0.1, epochs=1)
    for real, _ in seen:  # every labelled pixel smoothed (0.95 / 0.05), none one-hot
        values = torch.unique(real[real > 0])
        torch.testing.assert_close(values, torch.tensor([0.05, 0.95]))


def test_variants_and_validation():
    assert resolve("paper-soft-real") == ("paper", {"real_smoothing": 0.1})
    assert resolve("paper-hard-fake") == ("paper", {"hard_fake": True})
    assert {"conditional-raw", "paper-soft-real", "paper-hard-fake"} <= set(ablation_names())
    with pytest.raises(ValueError, match="real_smoothing"):
        ci_config(method="paper", real_smoothing=1.0)
    with pytest.raises(ValueError, match="truth maps as real"):
        ci_config(method="adaptsegnet", hard_fake=True)


def test_conditional_paper_is_the_paper_recipe(ci_adapt_config):
    cfg = ci_adapt_config(method="conditional-paper")
    assert (cfg.source_weight, cfg.adv_weight, cfg.condition_image) == (0.0, 1.0, "raw")
    cfg = ci_adapt_config(method="conditional")
    assert (cfg.source_weight, cfg.adv_weight, cfg.condition_image) == (1.0, 0.01, "rank")
    assert ci_adapt_config(method="conditional-paper", condition_image="rank").condition_image == "rank"


def test_conditional_paper_unet_update_reads_no_source_labels(adapt_volumes, monkeypatch):
    # No source loss: with the discriminator frozen, the source labels cannot reach the U-Net;
    # its image channel is not rank-normalised.
    src, tgt = adapt_volumes
    calls = []
    monkeypatch.setattr(adapt_steps, "rank_normalize", lambda x: calls.append(1) or x)
    cfg = ci_config(method="conditional-paper", lr_d=0.0, **TINY)
    shuffled = np.ascontiguousarray(src.labels[::-1, ::-1, ::-1])
    a = adapt(tiny_unet(), src.labels, tgt.image, cfg, source_image=src.image, progress=False)
    b = adapt(tiny_unet(), shuffled, tgt.image, cfg, source_image=src.image, progress=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and not calls
    assert a.discriminator.init_kwargs["in_channels"] == 3
    assert all(v == 0 for v in a.history["train"]["loss_source"])
