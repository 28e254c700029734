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


# --------------------------------------------------------------------------- resumed runs check their data (issue 24)


def _one_line_error(capsys, *names):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for name in names:
        assert str(name) in err[0], (name, err[0])
    return err[0]


def test_cli_train_resume_refuses_other_data_naming_the_flag(vol, tmp_path, monkeypatch, capsys):
    import numpy as np

    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.store import save_checkpoint

    monkeypatch.setenv("EMSEG_PRESET", "ci")
    other = make_volume("fibsem", (6, 48, 48), seed=1)
    write_volume(tmp_path / "img.tif", vol.image)
    write_volume(tmp_path / "lab.tif", vol.labels)
    write_volume(tmp_path / "img2.tif", other.image)
    write_volume(tmp_path / "lab2.tif", other.labels)
    write_volume(tmp_path / "img_big.tif", np.concatenate([vol.image, vol.image]))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "init.pt", UNet2d(out_channels=2, depth=2, base_width=4))
    run = tmp_path / "part"

    def train(image="img.tif", labels="lab.tif", *extra):
        return main([str(a) for a in ["train", "--image", tmp_path / image, "--labels", tmp_path / labels, "--task",
                                      "boundary", "--weights", "distance", "--device", "cpu", "--quiet", "--steps", "4",
                                      *extra]])

    assert train("img.tif", "lab.tif", "--steps", "2", "--out", run) == 0
    before = (run / "state.pt").read_bytes()
    assert train("img2.tif", "lab.tif", "--resume", run) == 2
    line = _one_line_error(capsys, f"--image {tmp_path / 'img2.tif'}: is not the volume the saved run in {run} "
                                   "trained on", "give the same --image, or start a new run without --resume")
    assert "shape 6x48x48 uint8" in line and "BLAKE2b" in line
    assert train("img.tif", "lab2.tif", "--resume", run) == 2
    _one_line_error(capsys, "--labels", "lab2.tif", "is not the volume")
    assert train("img_big.tif", "lab.tif", "--resume", run) == 2  # another shape: the pair check or ours
    _one_line_error(capsys, "img_big.tif")
    assert train("img.tif", "lab.tif", "--init", tmp_path / "init.pt", "--resume", run) == 2
    _one_line_error(capsys, "--init", "init.pt", "started from none", "leave --init out")
    assert (run / "state.pt").read_bytes() == before  # nothing trained, nothing written
    np.save(tmp_path / "img.npy", vol.image)  # the same voxels in another format: the same volume
    assert train("img.npy", "lab.tif", "--resume", run) == 0, capsys.readouterr().err
    assert load_training_state(run / "state.pt")["step"] == 4


def test_library_resume_refuses_other_data_and_accepts_an_old_state_with_a_warning(vol, tmp_path):
    from emseg_tutorial.store import InputChanged

    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(2), progress=False, checkpoint=state)
    saved = load_training_state(state)
    assert set(saved["inputs"]) == {"image", "labels", "init"} and saved["inputs"]["init"] is None
    assert saved["inputs"]["image"]["shape"] == [6, 48, 48]
    other = make_volume("fibsem", (6, 48, 48), seed=1)
    with pytest.raises(InputChanged, match=rf"^image: is not the volume the saved run in {state} trained on "
                                           r"\(saved: shape 6x48x48 uint8, BLAKE2b \w+, given: [^)]+\); give the "
                                           r"same image, or start a new run without resume$"):
        train_supervised(other.image, vol.labels, _config(4), progress=False, resume=saved)
    relabelled = vol.labels.copy()
    relabelled[0, 0, 0] = 1 if relabelled[0, 0, 0] != 1 else 2  # one voxel: a subsample would miss it
    with pytest.raises(ValueError, match="^labels: is not the volume"):
        train_supervised(vol.image, relabelled, _config(4), progress=False, resume=saved)
    # a state written before fingerprints were recorded: continued, with a warning naming it
    old = dict(saved)
    del old["inputs"]
    with pytest.warns(RuntimeWarning, match=rf"{state}: saved before input fingerprints were recorded"):
        resumed = train_supervised(vol.image, vol.labels, _config(4), progress=False, resume=old)
    full = train_supervised(vol.image, vol.labels, _config(4), progress=False)
    assert resumed.history["train"]["loss"] == full.history["train"]["loss"]


def test_adaptation_resume_refuses_other_data(tmp_path, ci_adapt_config, capsys, monkeypatch):
    from emseg_tutorial.adapt import adapt
    from emseg_tutorial.adapt.state import load_adaptation_state
    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.store import save_checkpoint

    src, tgt = make_volume("fibsem", (6, 48, 48), seed=0), make_volume("snemi", (4, 48, 48), seed=1)
    tgt2 = make_volume("snemi", (4, 48, 48), seed=2)
    torch.manual_seed(0)
    unet, other_unet = UNet2d(out_channels=2, **TINY), UNet2d(out_channels=2, **TINY)
    cfg = ci_adapt_config("conditional", epochs=1, steps_per_epoch=1, batch_size=2, patch=32, mismatch_gap=2,
                          discriminator={"width": 4, "depth": 2})
    state = tmp_path / "adapt_state.pt"
    adapt(unet, src.labels, tgt.image, cfg, source_image=src.image, progress=False, checkpoint=state)
    saved = load_adaptation_state(state)
    assert set(saved["inputs"]) == {"model", "source_labels", "target_image", "source_image"}
    more = dataclasses.replace(cfg, epochs=2)
    cases = {"target_image": dict(target_image=tgt2.image), "model": dict(model=other_unet),
             "source_image": dict(source_image=src.image[::-1].copy()),
             "source_labels": dict(source_labels=src.labels[::-1].copy())}
    for name, change in cases.items():
        args = dict(model=unet, source_labels=src.labels, target_image=tgt.image, source_image=src.image)
        args.update(change)
        thing = "network" if name == "model" else "volume"
        verb = "started from" if name == "model" else "ran on"
        with pytest.raises(ValueError, match=rf"^{name}: is not the {thing} the saved run in {state} {verb}"):
            adapt(args.pop("model"), args.pop("source_labels"), args.pop("target_image"), more, progress=False,
                  resume=load_adaptation_state(state), **args)

    # the command line names the flag and the file
    monkeypatch.setenv("EMSEG_PRESET", "ci")
    for name, data in {"s.tif": src.image, "sl.tif": src.labels, "t.tif": tgt.image, "t2.tif": tgt2.image}.items():
        write_volume(tmp_path / name, data)
    save_checkpoint(tmp_path / "m3.pt", unet)
    save_checkpoint(tmp_path / "other.pt", other_unet)
    base = ["adapt", "--source-labels", f"{tmp_path}/sl.tif", "--method", "paper", "--steps", "1", "--device",
            "cpu", "--quiet"]
    assert main(base + ["--model", f"{tmp_path}/m3.pt", "--target-image", f"{tmp_path}/t.tif", "--epochs", "1",
                        "--out", f"{tmp_path}/run"]) == 0, capsys.readouterr().err
    assert main(base + ["--model", f"{tmp_path}/m3.pt", "--target-image", f"{tmp_path}/t2.tif", "--epochs", "2",
                        "--resume", f"{tmp_path}/run"]) == 2
    _one_line_error(capsys, f"--target-image {tmp_path}/t2.tif: is not the volume the saved run in {tmp_path}/run "
                            "ran on", "give the same --target-image")
    assert main(base + ["--model", f"{tmp_path}/other.pt", "--target-image", f"{tmp_path}/t.tif", "--epochs", "2",
                        "--resume", f"{tmp_path}/run"]) == 2
    _one_line_error(capsys, "--model", "other.pt", "is not the network the saved run")


def test_fingerprints_are_of_the_content():
    import numpy as np

    from emseg_tutorial.models import UNet2d
    from emseg_tutorial.store import fingerprint

    a = np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7)
    assert fingerprint(a[:, ::2]) == fingerprint(np.ascontiguousarray(a[:, ::2]))  # a view is hashed as its copy
    assert fingerprint(a) != fingerprint(a.astype(np.uint16))  # the dtype is part of it
    assert fingerprint(a) != fingerprint(a.reshape(5, 2, 7))  # so is the shape
    torch.manual_seed(0)
    net = UNet2d(out_channels=2, **TINY)
    fp = fingerprint(net)
    assert fp == fingerprint(net) and fp["kind"] == "network"
    with torch.no_grad():
        net.head.bias.add_(1)
    assert fingerprint(net) != fp
    assert fingerprint(None) is None


def test_a_run_with_every_augmentation_resumed_equals_an_uninterrupted_one(vol, tmp_path):
    """Elastic and intensity draws come from the sampler's stream, saved with the state (issue 22)."""
    full = train_supervised(vol.image, vol.labels, _config(4, augment="all"), progress=False)
    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(2, augment="all"), progress=False, checkpoint=state)
    resumed = train_supervised(vol.image, vol.labels, _config(4, augment="all"), progress=False,
                               resume=load_training_state(state))
    assert resumed.history["train"]["loss"] == full.history["train"]["loss"]
    assert _same_weights(resumed.model, full.model)
    plain = train_supervised(vol.image, vol.labels, _config(4), progress=False)
    assert plain.history["train"]["loss"] != full.history["train"]["loss"]


def test_a_state_saved_before_augment_existed_resumes_with_flips(vol, tmp_path):
    """An older state's config has no ``augment``: it ran with flips and turns, and resumes so
    (store.with_defaults); another augmentation is refused as other settings."""
    state = tmp_path / "state.pt"
    train_supervised(vol.image, vol.labels, _config(2), progress=False, checkpoint=state)
    old = load_training_state(state)
    assert old["config"].pop("augment") == "flips"
    resumed = train_supervised(vol.image, vol.labels, _config(4), progress=False, resume=old)
    full = train_supervised(vol.image, vol.labels, _config(4), progress=False)
    assert resumed.history["train"]["loss"] == full.history["train"]["loss"]
    old = load_training_state(state)
    old["config"].pop("augment")
    with pytest.raises(ValueError, match=r"other settings \(augment\)"):
        train_supervised(vol.image, vol.labels, _config(4, augment="flips+elastic"), progress=False, resume=old)
