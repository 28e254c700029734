"""Runs that survive a disconnect: a resumed run equals an uninterrupted one, bit for bit on CPU.

The patch sampler is the one CUDA runs (drawn on the device with a torch generator); a state
whose random streams come from a CUDA generator (16 bytes: seed and offset) is refused on the
CPU in one line, and the gradient scaler's path (enabled only for float16 on CUDA) runs here
with float32 by forcing it on.
"""

import dataclasses

import pytest
import torch

from emseg_tutorial import devices
from emseg_tutorial.cli import main
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.paper.stages import train_config
from emseg_tutorial.presets import get_preset
from emseg_tutorial.store import load_checkpoint, load_training_state
from emseg_tutorial.train import train_supervised

TINY = {"depth": 2, "base_width": 4, "norm": "batch"}


@pytest.fixture(scope="module")
def vol():
    return make_volume("fibsem", (6, 48, 48), seed=0)


def _config(steps, **kw):
    """A tiny boundary run from the ci preset (library builder), its sizes shrunk by name."""
    return train_config(get_preset("ci"), task="boundary", weights="distance", steps=steps, batch_size=2, patch=32,
                        val_every=2, model=dict(TINY), device="cpu", **kw)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _cuda_state(offset=0):
    """What a CUDA generator's ``get_state()`` is: its seed and offset as 16 bytes."""
    return torch.tensor([0, offset], dtype=torch.int64).view(torch.uint8)


@pytest.mark.parametrize("scaler", [False, True], ids=["no-scaler", "grad-scaler"])
@pytest.mark.parametrize("jitter", [False, True])
def test_three_steps_resumed_to_six_equal_six(vol, tmp_path, monkeypatch, jitter, scaler):
    if scaler:  # the float16 branch's enabled GradScaler, with float32 on the CPU
        monkeypatch.setattr(devices.Precision, "scales_gradients", property(lambda self: True))
    full = train_supervised(vol.image, vol.labels, _config(6, jitter=jitter), progress=False)
    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(3, jitter=jitter), progress=False, checkpoint=state)
    saved = load_training_state(state)
    assert saved["step"] == 3 and saved["rng"]["device"] == "cpu"
    assert bool(saved["scaler"]) == scaler  # an enabled scaler's state is saved and restored
    resumed = train_supervised(vol.image, vol.labels, _config(6, jitter=jitter), progress=False,
                               checkpoint=state, resume=load_training_state(state))
    assert resumed.history["train"]["loss"] == full.history["train"]["loss"]
    assert resumed.history["train"]["step"] == list(range(1, 7))
    assert _same_weights(resumed.model, full.model)
    assert load_training_state(state)["step"] == 6


def test_resume_of_a_state_drawn_on_cuda_is_refused_on_the_cpu_in_one_line(vol, tmp_path):
    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(2), progress=False, checkpoint=state)
    saved = load_training_state(state)
    saved["rng"].update(device="cuda", sampler=_cuda_state(123))
    with pytest.raises(ValueError, match=r"^cannot resume on cpu: the saved patch stream was drawn on cuda, "
                                         r"[^\n]*; resume on cuda$"):
        train_supervised(vol.image, vol.labels, _config(4), progress=False, resume=saved)


def test_resume_refuses_other_settings(vol, tmp_path):
    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(2), progress=False, checkpoint=state)
    with pytest.raises(ValueError, match="other settings.*weights"):
        train_supervised(vol.image, vol.labels, dataclasses.replace(_config(4), weights="none"),
                         progress=False, resume=load_training_state(state))
    with pytest.raises(ValueError, match="past steps=1"):
        train_supervised(vol.image, vol.labels, _config(1), progress=False, resume=load_training_state(state))
    with pytest.raises(ValueError, match="junk.pt: not a (readable )?training state"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        load_training_state(tmp_path / "junk.pt")


def test_cli_train_resume(vol, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMSEG_PRESET", "ci")
    write_volume(tmp_path / "img.tif", vol.image)
    write_volume(tmp_path / "lab.tif", vol.labels)
    base = ["train", "--image", f"{tmp_path}/img.tif", "--labels", f"{tmp_path}/lab.tif", "--task", "boundary",
            "--weights", "distance", "--device", "cpu", "--quiet"]
    assert main(base + ["--steps", "4", "--out", f"{tmp_path}/full"]) == 0
    assert main(base + ["--steps", "2", "--out", f"{tmp_path}/part"]) == 0
    assert main(base + ["--steps", "4", "--resume", f"{tmp_path}/part"]) == 0, capsys.readouterr().err
    full, _ = load_checkpoint(tmp_path / "full" / "model.pt")
    part, ckpt = load_checkpoint(tmp_path / "part" / "model.pt")
    assert _same_weights(full, part) and ckpt["history"]["train"]["step"] == [1, 2, 3, 4]
    assert main(base + ["--steps", "4", "--resume", f"{tmp_path}/nowhere"]) == 2
    assert "no training state" in capsys.readouterr().err


@pytest.mark.parametrize("method, scaler", [("paper", False), ("conditional", False), ("selftrain", False),
                                            ("paper", True), ("selftrain", True)])
def test_adaptation_resumed_after_an_epoch_equals_an_uninterrupted_run(tmp_path, monkeypatch, method, scaler,
                                                                        ci_adapt_config):
    from emseg_tutorial.adapt import adapt
    from emseg_tutorial.adapt.state import load_adaptation_state
    from emseg_tutorial.models import UNet2d

    if scaler:  # the float16 branch's enabled GradScalers, with float32 on the CPU
        monkeypatch.setattr(devices.Precision, "scales_gradients", property(lambda self: True))
    src, tgt = make_volume("fibsem", (6, 48, 48), seed=0), make_volume("snemi", (4, 48, 48), seed=1)
    torch.manual_seed(0)
    unet = UNet2d(out_channels=2, **TINY)

    def run(epochs, **kw):
        cfg = ci_adapt_config(method, epochs=epochs, steps_per_epoch=2, batch_size=2, patch=32, mismatch_gap=2,
                              discriminator={"width": 4, "depth": 2})
        return adapt(unet, src.labels, tgt.image, cfg, source_image=src.image, progress=False, **kw)

    full = run(2)
    state = tmp_path / "adapt_state.pt"
    run(1, checkpoint=state)
    saved = load_adaptation_state(state)
    assert saved["epoch"] == 1 and saved["rng"]["device"] == "cpu"
    assert bool(saved["scalers"]["g"]) == scaler
    resumed = run(2, checkpoint=state, resume=load_adaptation_state(state))
    assert _same_weights(resumed.model, full.model)
    assert resumed.history["train"]["step"] == full.history["train"]["step"] == [1, 2, 3, 4]
    for key in full.history["train"]:
        assert resumed.history["train"][key] == full.history["train"][key], key
    assert [e["epoch"] for e in resumed.history["epochs"]] == [0, 1, 2]
    assert all((a == b).all() for a, b in zip(resumed.snapshots, full.snapshots))
    with pytest.raises(ValueError, match="past epochs=1"):
        run(1, resume=load_adaptation_state(state))
    for stream in ("source", "target", "jitter"):  # each stream drawn on CUDA is refused on the CPU
        saved = load_adaptation_state(state)
        saved["rng"].update({"device": "cuda", stream: _cuda_state()})
        with pytest.raises(ValueError, match=r"^cannot resume on cpu: the saved \w+ stream was drawn on cuda"):
            run(3, resume=saved)


def test_cli_adapt_resume(tmp_path, monkeypatch, capsys):
    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.store import save_checkpoint

    monkeypatch.setenv("EMSEG_PRESET", "ci")
    src, tgt = make_volume("fibsem", (6, 48, 48), seed=0), make_volume("snemi", (4, 48, 48), seed=1)
    for name, data in {"s.tif": src.image, "sl.tif": src.labels, "t.tif": tgt.image}.items():
        write_volume(tmp_path / name, data)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m3.pt", UNet2d(out_channels=2, **TINY))
    base = ["adapt", "--model", f"{tmp_path}/m3.pt", "--source-labels", f"{tmp_path}/sl.tif", "--target-image", f"{tmp_path}/t.tif", "--method", "paper", "--steps", "2",
            "--device", "cpu", "--quiet"]
    assert main(base + ["--epochs", "2", "--out", f"{tmp_path}/full"]) == 0, capsys.readouterr().err
    assert main(base + ["--epochs", "1", "--out", f"{tmp_path}/part"]) == 0
    assert main(base + ["--epochs", "2", "--resume", f"{tmp_path}/part"]) == 0, capsys.readouterr().err
    full, _ = load_checkpoint(tmp_path / "full" / "model.pt")
    part, ckpt = load_checkpoint(tmp_path / "part" / "model.pt")
    assert _same_weights(full, part) and [e["epoch"] for e in ckpt["history"]["epochs"]] == [0, 1, 2]
    one_shot = [a if a != "paper" else "adabn" for a in base if a not in ("--steps", "2")]  # adabn reads no --steps
    assert main(one_shot + ["--resume", f"{tmp_path}/part"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
