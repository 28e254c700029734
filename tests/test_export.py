"""bioimage.io export: a valid package offline, TorchScript equal to the library's prediction,
one-line errors for files that are not U-Net checkpoints."""

import os
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("bioimageio.spec")
yaml = pytest.importorskip("yaml")

from emseg_tutorial.cli import main  # noqa: E402
from emseg_tutorial.data.normalize import Normalizer  # noqa: E402
from emseg_tutorial.models import PatchDiscriminator, UNet2d  # noqa: E402
from emseg_tutorial.predict import predict_probabilities  # noqa: E402
from emseg_tutorial.predict.export import ProbabilityUNet, export_bioimageio, validate_package  # noqa: E402
from emseg_tutorial.store import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    unet = UNet2d(out_channels=2, depth=2, base_width=4)
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for module in unet.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    save_checkpoint(folder / "m.pt", unet, config={"task": "boundary"})
    rdf = export_bioimageio(folder / "m.pt", folder / "pkg", shape=(2, 32, 32))
    return folder, rdf, unet


def test_package_validates_offline_and_says_what_the_issue_asks(package):
    _, rdf, _ = package
    assert validate_package(rdf) == "valid-format"
    doc = yaml.safe_load(rdf.read_text())
    assert doc["format_version"].startswith("0.5") and doc["license"] == "BSD-3-Clause"
    cites = " ".join(c["text"] + str(c.get("url", "")) + str(c.get("doi", "")) for c in doc["cite"])
    assert "2004.02748" in cites and "Roy" in cites and "emseg-tutorial" in cites
    assert doc["authors"] and doc["name"] and doc["description"]
    assert set(doc["weights"]) == {"pytorch_state_dict", "torchscript"}
    raw = doc["inputs"][0]
    assert [a.get("id", a["type"]) for a in raw["axes"]] == ["batch", "channel", "y", "x"]
    steps = [p["id"] for p in raw["preprocessing"] if p["id"] != "ensure_dtype"]
    assert steps == ["scale_range", "clip", "zero_mean_unit_variance"]
    assert raw["preprocessing"][1]["kwargs"]["min_percentile"] == 0.5
    source = lambda entry: entry["source"] if isinstance(entry, dict) else entry  # noqa: E731
    card = (rdf.parent / source(doc["documentation"])).read_text()
    assert "whole volume" in card.lower() and (rdf.parent / source(doc["covers"][0])).stat().st_size > 0


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_with_plain_torch_equals_the_library_prediction(package):
    _, rdf, unet = package
    scripted = torch.jit.load(str(rdf.parent / "weights.torchscript.pt"))
    test_in = np.load(rdf.parent / "test_input.npy")
    test_out = np.load(rdf.parent / "test_output.npy")
    norm = Normalizer.from_volume(test_in[:, 0])  # the rdf's preprocessing, over batch, y, x
    with torch.no_grad():
        out = scripted(torch.from_numpy(norm(test_in[:, 0])[:, None])).numpy()
    np.testing.assert_allclose(out, test_out, atol=1e-5)
    other = np.random.default_rng(1).integers(0, 255, (3, 48, 64), dtype=np.uint8)  # another size, uint8
    with torch.no_grad():
        out = scripted(torch.from_numpy(Normalizer.from_volume(other)(other)[:, None])).numpy()
    expected = predict_probabilities(unet, other, tile=64, overlap=0, device="cpu")
    np.testing.assert_allclose(out, expected.transpose(1, 0, 2, 3), atol=1e-5)
    doc = yaml.safe_load(rdf.read_text())
    net = ProbabilityUNet(**doc["weights"]["pytorch_state_dict"]["architecture"]["kwargs"])
    net.load_state_dict(torch.load(rdf.parent / "weights.pt", weights_only=True))
    with torch.no_grad():
        again = net.eval()(torch.from_numpy(norm(test_in[:, 0])[:, None])).numpy()
    np.testing.assert_allclose(again, test_out, atol=1e-5)


def test_cli_exports_a_zip_for_the_model_zoo(package, capsys):
    folder, _, _ = package
    assert main(["export", "--model", str(folder / "m.pt"), "--out", str(folder / "m.zip"),
                 "--test-shape", "1", "32", "32"]) == 0
    assert "valid-format" in capsys.readouterr().out
    assert {"rdf.yaml", "weights.torchscript.pt", "cover.png"} <= set(zipfile.ZipFile(folder / "m.zip").namelist())
    assert validate_package(folder / "m.zip") == "valid-format"


def test_export_refuses_what_is_not_a_unet_checkpoint(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    save_checkpoint(tmp_path / "discriminator.pt", PatchDiscriminator(in_channels=2, width=4, depth=2, norm=None))
    for name, words in (("notes.pt", "notes.pt: not a PyTorch checkpoint"), ("discriminator.pt", "patch_discriminator"),
                        ("missing.pt", "no such checkpoint")):
        assert main(["export", "--model", str(tmp_path / name), "--out", str(tmp_path / "pkg")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
    assert not (tmp_path / "pkg").exists()


def test_export_fills_an_empty_folder_and_replaces_a_zip_only_with_a_valid_package(package, tmp_path, capsys):
    folder, _, _ = package
    (tmp_path / "empty").mkdir()
    rdf = export_bioimageio(folder / "m.pt", tmp_path / "empty", shape=(1, 16, 16))
    assert rdf == tmp_path / "empty" / "rdf.yaml" and validate_package(rdf) == "valid-format"
    (tmp_path / "m.zip").write_bytes(b"an older package")
    assert main(["export", "--model", str(folder / "m.pt"), "--out", str(tmp_path / "m.zip"),
                 "--test-shape", "1", "16", "16"]) == 0
    assert validate_package(tmp_path / "m.zip") == "valid-format"
    assert sorted(os.listdir(tmp_path)) == ["empty", "m.zip"]  # the staging folder is gone


def test_a_failed_export_leaves_no_folder_it_made(package, tmp_path, monkeypatch):
    import bioimageio.spec as spec

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spec, "save_bioimageio_package", full)
    with pytest.raises(ValueError, match="No space left on device"):
        export_bioimageio(package[0] / "m.pt", tmp_path / "a" / "b" / "pkg.zip", shape=(1, 16, 16))
    assert os.listdir(tmp_path) == []
