"""Device-agnostic precision and batches: the GPU paths are chosen by pure rules tested here."""

import numpy as np
import pytest
import torch

from emseg_tutorial.devices import Precision, amp_dtype, memory_format, pick_device, precision, to_device
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
    batch = {"image": np.zeros((2, 1, 16, 16), np.float32), "target": np.ones((2, 16, 16), np.int64),
             "weight": np.ones((2, 16, 16), np.float32)}
    batch = to_device(batch, torch.device("cpu"))
    model = UNet2d(out_channels=2, depth=2, base_width=4)
    p = precision("cpu")
    loss = training_step(model, batch, torch.optim.Adam(model.parameters()), p.grad_scaler(), p)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and not loss.requires_grad


def test_to_device_passes_tensors_through_and_copies_arrays():
    t = torch.arange(4)
    out = to_device({"t": t, "a": np.ones(3, np.float32)}, torch.device("cpu"))
    assert out["t"] is t   # a device sampler's batch is not copied again
    assert isinstance(out["a"], torch.Tensor) and out["a"].dtype == torch.float32


def test_memory_format_channels_last_on_cuda_and_cpu():
    assert memory_format("cuda") == torch.channels_last
    assert memory_format(torch.device("cpu")) == torch.channels_last   # faster oneDNN convolutions
    assert memory_format("mps") == torch.contiguous_format
