"""Device-agnostic precision and batches: the GPU paths are chosen by pure rules tested here,
and each branch a GPU takes (fused Adam, an enabled gradient scaler, channels-last, compile with
its eager fallback, prediction under autocast) runs on the CPU too."""

import numpy as np
import pytest
import torch

from emseg_tutorial.devices import (Precision, adam, amp_dtype, compile_model, fused_adam, memory_format, pick_device,
                                    precision)
from emseg_tutorial.models import UNet2d
from emseg_tutorial.train.supervised import training_step


@pytest.mark.parametrize("device_type, bf16, dtype, scales", [
    ("cuda", True, torch.bfloat16, False),    # A100 / H100 / L4: bfloat16, no scaler needed
    ("cuda", False, torch.float16, True),     # T4 / V100: float16 with a gradient scaler
    ("cpu", True, torch.bfloat16, False),     # AVX512-BF16 / AMX CPUs: bfloat16
    ("cpu", False, None, False), ("mps", True, None, False),
])
def test_precision_rules(device_type, bf16, dtype, scales):
    p = Precision(device_type, amp_dtype(device_type, bf16))
    assert p.dtype == dtype and p.scales_gradients == scales and p.enabled == (dtype is not None)


def test_cpu_runs_in_float32_when_asked_or_without_native_bf16(monkeypatch):
    p = precision("cpu", "float32")
    assert p.dtype is None and not p.grad_scaler().is_enabled()
    with p.autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    import emseg_tutorial.devices as devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert precision("cpu").dtype is None
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert precision("cpu").dtype == torch.bfloat16 and not precision("cpu").scales_gradients


def test_precision_settings_are_checked(ci_train_config, ci_adapt_config):
    with pytest.raises(ValueError, match="precision must be one of"):
        precision("cpu", "half")
    with pytest.raises(ValueError, match="needs CUDA"):
        precision("cpu", "float16")

    with pytest.raises(ValueError, match="precision must be one of"):
        ci_train_config(precision="fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        ci_adapt_config(precision="fp8")


def test_bfloat16_training_on_cpu_keeps_float32_weights_and_learns():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 16, 16)
    batch = {"image": x, "target": (x[:, 0] > 0.5).long(), "weight": torch.ones(4, 16, 16)}
    model = UNet2d(out_channels=2, depth=2, base_width=4)
    p = precision("cpu", "bfloat16")
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = [float(training_step(model, batch, opt, p.grad_scaler(), p)) for _ in range(30)]
    assert all(w.dtype == torch.float32 for w in model.parameters())
    assert losses[-1] < 0.5 * losses[0]


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        pick_device("bogus")


def test_training_step_keeps_the_loss_on_the_device():
    batch = {"image": torch.zeros(2, 1, 16, 16), "target": torch.ones(2, 16, 16, dtype=torch.int64),
             "weight": torch.ones(2, 16, 16)}
    model = UNet2d(out_channels=2, depth=2, base_width=4)
    p = precision("cpu")
    loss = training_step(model, batch, torch.optim.Adam(model.parameters()), p.grad_scaler(), p)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and not loss.requires_grad


def test_prediction_under_autocast_the_branch_cuda_takes_runs_on_the_cpu(monkeypatch):
    """Prediction autocasts on CUDA (inference_precision) and stays float32 on the CPU; the
    autocast branch itself, forced here with bfloat16 on the CPU, gives the float32 result to
    bfloat16's precision."""
    from emseg_tutorial.predict import tiled

    model = UNet2d(out_channels=2, depth=2, base_width=4).eval()
    image = np.random.default_rng(0).integers(0, 255, (2, 40, 40), dtype=np.uint8)
    plain = tiled.predict_probabilities(model, image, device="cpu")
    monkeypatch.setattr(tiled, "inference_precision", lambda device: Precision("cpu", torch.bfloat16))
    cast = tiled.predict_probabilities(model, image, device="cpu")
    assert cast.dtype == plain.dtype == np.float32 and cast.shape == plain.shape
    assert np.abs(cast - plain).max() < 0.05 and not np.array_equal(cast, plain)


def test_memory_format_channels_last_on_cuda_and_cpu():
    assert memory_format("cuda") == torch.channels_last
    assert memory_format(torch.device("cpu")) == torch.channels_last   # faster oneDNN convolutions
    assert memory_format("mps") == torch.contiguous_format


# --------------------------------------------------------------------------- GPU branches on the CPU


def _tiny_batch(seed=0):
    torch.manual_seed(seed)
    x = torch.rand(4, 1, 16, 16)
    return {"image": x, "target": (x[:, 0] > 0.5).long(), "weight": torch.ones(4, 16, 16)}


def test_adam_is_fused_on_the_cpu_and_steps_as_the_default_adam():
    assert fused_adam("cpu") and fused_adam("cuda")
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 3), torch.nn.Linear(8, 3)
    b.load_state_dict(a.state_dict())
    fused, plain = adam(a.parameters(), 1e-2, "cpu"), torch.optim.Adam(b.parameters(), 1e-2)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    x = torch.randn(16, 8)
    for _ in range(5):
        for net, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        assert not torch.equal(p, q.detach().clone().zero_())


@pytest.mark.parametrize("mode", ["float32", "bfloat16"])
def test_an_enabled_grad_scaler_trains_on_the_cpu_and_skips_non_finite_steps(mode):
    """The float16 (CUDA) branch of every trainer: scaled loss, unscaled fused Adam step, and a
    skipped step with a halved scale where a gradient is not finite."""
    amp = precision("cpu", mode)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    assert scaler.is_enabled()
    model = UNet2d(out_channels=2, depth=2, base_width=4)
    opt = adam(model.parameters(), 1e-2, "cpu")
    batch = _tiny_batch()
    losses = [float(training_step(model, batch, opt, scaler, amp)) for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0] and scaler.get_scale() == 2.0 ** 10
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = dict(batch, weight=torch.full((4, 16, 16), float("inf")))
    training_step(model, bad, opt, scaler, amp)
    assert scaler.get_scale() == 2.0 ** 9   # the step was skipped, the scale backed off
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if v.is_floating_point()
               and "running" not in k)


def test_precision_grad_scaler_is_the_devices_and_enabled_only_for_float16():
    assert Precision("cpu", torch.float16).grad_scaler().is_enabled()  # what CUDA's float16 gets, here
    assert not Precision("cpu", torch.bfloat16).grad_scaler().is_enabled()


def test_channels_last_training_matches_the_default_layout_on_the_cpu():
    """The layout CUDA and the CPU train in gives the default layout's logits and gradients."""
    torch.manual_seed(0)
    a = UNet2d(out_channels=2, depth=2, base_width=4)
    b = UNet2d(out_channels=2, depth=2, base_width=4)
    b.load_state_dict(a.state_dict())
    a = a.to(memory_format=memory_format("cpu"))
    convs = [m.weight for m in a.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.shape[-1] > 1)
    image = _tiny_batch()["image"]
    outs = []
    for net, layout in ((a, torch.channels_last), (b, torch.contiguous_format)):
        logits = net(image.contiguous(memory_format=layout))
        logits.square().mean().backward()
        outs.append(logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=k)


def test_compile_falls_back_to_eager_when_compiling_fails(monkeypatch):
    def fail(model, *args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", fail)
    net = torch.nn.Linear(2, 1)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .RuntimeError: no compiler here."):
        assert compile_model(net) is net


class _FailsAtFirstCall(torch.nn.Module):
    """What torch.compile may return: a module whose first call raises (a backend error)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        raise RuntimeError("backend compiler failed")


def test_training_with_compile_goes_on_eagerly_when_the_first_step_fails(monkeypatch):
    from emseg_tutorial.data.synthetic import make_volume
    from emseg_tutorial.train import TrainConfig, train_supervised

    vol = make_volume("fibsem", (4, 48, 48), seed=0)
    cfg = TrainConfig(task="boundary", weights="distance", steps=3, batch_size=2, patch=32, val_every=3, lr=1e-3,
                      model={"depth": 2, "base_width": 4}, device="cpu", precision="float32")
    eager = train_supervised(vol.image, vol.labels, cfg, progress=False)
    monkeypatch.setattr(torch, "compile", lambda model, *a, **k: _FailsAtFirstCall(model))
    with pytest.warns(RuntimeWarning, match="torch.compile failed .RuntimeError: backend compiler failed."):
        run = train_supervised(vol.image, vol.labels, cfg, progress=False, compile=True)
    assert run.history["train"]["loss"] == eager.history["train"]["loss"]  # the failed call changed nothing
