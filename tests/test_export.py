"""bioimage.io export: a valid package offline that bioimageio.core's own test passes (both
weight formats, the state-dict one without this library), the runner's prediction equal to the
library's, a halo without seams, one-line errors for files that are not U-Net checkpoints."""

import hashlib
import os
import subprocess
import sys
import textwrap
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
from emseg_tutorial.models import unet as unet_module  # noqa: E402
from emseg_tutorial.models.unet import context_pixels  # noqa: E402
from emseg_tutorial.predict.export import (ProbabilityUNet, export_bioimageio, fixed_normalisation,  # noqa: E402
                                           halo_pixels, validate_package)
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
    rdf = export_bioimageio(folder / "m.pt", folder / "pkg")  # two slices of the smallest size, 52 x 52
    return folder, rdf, unet


def test_package_validates_offline_and_says_what_the_issue_asks(package):
    _, rdf, _ = package
    assert validate_package(rdf) == "valid-format"
    doc = yaml.safe_load(rdf.read_text())
    assert doc["format_version"].startswith("0.5") and doc["license"] == "BSD-3-Clause"
    cites = " ".join(c["text"] + str(c.get("url", "")) + str(c.get("doi", "")) for c in doc["cite"])
    assert "2004.02748" in cites and "emseg-tutorial" in cites
    assert doc["cite"][0]["text"].startswith(  # title and authors as the paper (/work/shared/paper) gives them
        "Roy, S. & Chakraborty, A. (2020). Semantic Segmentation of highly class imbalanced fully labelled 3D "
        "volumetric biomedical images and unsupervised Domain Adaptation of the pre-trained Segmentation Network "
        "to segment another fully unlabelled Biomedical 3D Image stack.")
    assert doc["authors"] and doc["name"] and doc["description"]
    assert set(doc["weights"]) == {"pytorch_state_dict", "torchscript"}
    raw = doc["inputs"][0]
    assert [a.get("id", a["type"]) for a in raw["axes"]] == ["batch", "channel", "y", "x"]
    steps = [p for p in raw["preprocessing"] if p["id"] != "ensure_dtype"]
    assert [p["id"] for p in steps] == ["scale_linear", "clip", "scale_linear"]  # fixed numbers, no statistics
    fixed = fixed_normalisation(Normalizer.from_volume(np.load(rdf.parent / "test_input.npy")[:, 0]))
    assert steps[0]["kwargs"] == fixed["unit"] and steps[2]["kwargs"] == fixed["standardise"]
    halo = halo_pixels(doc["weights"]["pytorch_state_dict"]["architecture"]["kwargs"])
    assert halo == 24 and [a.get("halo") for a in doc["outputs"][0]["axes"][2:]] == [halo, halo]
    assert raw["axes"][2]["size"] == {"min": 2 * halo + 4, "step": 4}
    source = lambda entry: entry["source"] if isinstance(entry, dict) else entry  # noqa: E731
    card = (rdf.parent / source(doc["documentation"])).read_text()
    assert "whole volume" in card and "--stats-of" in card and f"{halo} pixels" in card
    assert (rdf.parent / source(doc["covers"][0])).stat().st_size > 0


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
                 "--test-shape", "1", "52", "56"]) == 0
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
    rdf = export_bioimageio(folder / "m.pt", tmp_path / "empty", shape=(1, 52, 52))
    assert rdf == tmp_path / "empty" / "rdf.yaml" and validate_package(rdf) == "valid-format"
    (tmp_path / "m.zip").write_bytes(b"an older package")
    assert main(["export", "--model", str(folder / "m.pt"), "--out", str(tmp_path / "m.zip"),
                 "--test-shape", "1", "52", "52"]) == 0
    assert validate_package(tmp_path / "m.zip") == "valid-format"
    assert sorted(os.listdir(tmp_path)) == ["empty", "m.zip"]  # the staging folder is gone


def test_a_failed_export_leaves_no_folder_it_made(package, tmp_path, monkeypatch):
    import bioimageio.spec as spec

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spec, "save_bioimageio_package", full)
    with pytest.raises(ValueError, match="No space left on device"):
        export_bioimageio(package[0] / "m.pt", tmp_path / "a" / "b" / "pkg.zip", shape=(1, 52, 52))
    assert os.listdir(tmp_path) == []


def test_the_architecture_ships_as_the_librarys_own_source_with_its_sha256(package):
    _, rdf, _ = package
    arch = yaml.safe_load(rdf.read_text())["weights"]["pytorch_state_dict"]["architecture"]
    shipped = (rdf.parent / arch["source"]).read_bytes()
    assert arch["callable"] == "ProbabilityUNet" and arch["sha256"] == hashlib.sha256(shipped).hexdigest()
    assert shipped == open(unet_module.__file__, "rb").read()
    imports = {line.split()[1] for line in shipped.decode().splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "math", "torch", "torch.nn.functional"}  # it stands alone


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_context_pixels_is_how_far_an_output_pixel_reaches(upsample):
    """The halo's basis: gradients of one output pixel reach exactly ``context_pixels`` to one side
    (ReLU leaky and max-pooling averaged, so no gradient is zero by chance)."""
    torch.manual_seed(0)
    net = UNet2d(out_channels=1, depth=2, base_width=2, norm=None, upsample=upsample).eval()
    for parent in list(net.modules()):
        for key, child in parent.named_children():
            if isinstance(child, (torch.nn.ReLU, torch.nn.MaxPool2d)):
                swapped = torch.nn.LeakyReLU(0.1) if isinstance(child, torch.nn.ReLU) else torch.nn.AvgPool2d(2)
                setattr(parent, key, swapped)
    x = torch.rand(8, 1, 4, 96, requires_grad=True)
    net(x)[torch.arange(8), 0, 2, 44 + torch.arange(8)].sum().backward()  # one pixel per batch entry
    reach = 0
    for b in range(8):
        cols = torch.nonzero(x.grad[b, 0].abs().sum(0)).flatten()
        reach = max(reach, 44 + b - int(cols.min()), int(cols.max()) - 44 - b)
    assert reach == context_pixels(2, upsample)


@pytest.fixture(scope="module")
def core():
    return pytest.importorskip("bioimageio.core")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bioimageio_core_test_model_passes_the_torchscript(package, core):
    summary = core.test_model(package[1], weight_format="torchscript", devices=["cpu"])
    assert summary.status == "passed", summary.format()


#: run with ``python -I`` from an empty folder: no cwd, no PYTHONPATH, and emseg_tutorial blocked
#: however it is installed (editable or not), so the state-dict weights must load from the package alone
STANDALONE = textwrap.dedent("""
    import importlib.abc, sys

    class NoEmseg(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "emseg_tutorial":
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NoEmseg())
    try:
        import emseg_tutorial
    except ModuleNotFoundError:
        print("emseg_tutorial: not importable")
    else:
        sys.exit("emseg_tutorial is importable")
    from bioimageio.core import test_model

    summary = test_model(sys.argv[1], weight_format="pytorch_state_dict", devices=["cpu"])
    print("status:", summary.status)
    print(summary.format() if summary.status != "passed" else "")
    assert "emseg_tutorial" not in sys.modules
""")


def test_bioimageio_core_test_model_passes_the_state_dict_without_this_library(package, core, tmp_path):
    _, rdf, _ = package
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-I", "-c", STANDALONE, str(rdf)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "emseg_tutorial: not importable" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0 and "status: passed" in done.stdout, done.stdout + done.stderr[-3000:]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_runner_predicts_a_new_uint8_volume_as_the_library_does_and_tiles_without_seams(package, core,
                                                                                          tmp_path):
    """A package exported with the new volume's statistics (``--stats-of``): bioimageio.core's
    prediction equals ``predict``'s (its own whole-volume normaliser, uint8 divided by 255)."""
    folder, _, unet = package
    new = np.random.default_rng(2).integers(20, 230, (2, 104, 136), dtype=np.uint8)
    rdf = export_bioimageio(folder / "m.pt", tmp_path / "pkg", normalizer=Normalizer.from_volume(new),
                            stats_of="new.tif")
    summary = core.test_model(rdf, weight_format="torchscript", devices=["cpu"])  # its test input in that range
    assert summary.status == "passed", summary.format()
    expected = predict_probabilities(unet, new, device="cpu").transpose(1, 0, 2, 3)  # the library: (z, C, y, x)
    raw = core.Tensor.from_numpy(new[:, None], dims=("batch", "channel", "y", "x"))
    pipeline = core.create_prediction_pipeline(core.load_description(rdf), weight_format="torchscript",
                                               devices=["cpu"])
    with pipeline:  # the whole stack at once, as the runner's test does it (no halo padding)
        whole = pipeline.predict_sample_without_blocking(core.Sample(members={"raw": raw}, stat={}, id="new"),
                                                         skip_input_padding=True, skip_output_cropping=True)
    np.testing.assert_allclose(whole.members["probabilities"].data.values, expected, atol=1e-4)
    # bioimageio.core.predict (it loads and unloads the pipeline) pads by the halo, mirroring at the
    # border, in one piece or in tiles
    padded = core.predict(model=pipeline, inputs={"raw": raw}).members["probabilities"].data.values
    tiled = core.predict(model=pipeline, inputs={"raw": raw},
                         input_block_shape={"raw": {"batch": 1, "channel": 1, "y": 64, "x": 64}})
    tiled = tiled.members["probabilities"].data.values
    np.testing.assert_allclose(tiled, padded, atol=1e-4)  # 16 x 16 tiles of 64 x 64 blocks: no seams
    h = halo_pixels(unet.init_kwargs)
    np.testing.assert_allclose(tiled[..., h:-h, h:-h], expected[..., h:-h, h:-h], atol=1e-4)
    doc = yaml.safe_load(rdf.read_text())
    steps = [p for p in doc["inputs"][0]["preprocessing"] if p["id"] != "ensure_dtype"]
    assert steps[0]["kwargs"] == {"gain": 1 / 255, "offset": 0.0}  # uint8: divided by 255, as the library does
