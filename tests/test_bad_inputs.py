"""Bad inputs a careful user makes (issue 15): each is a clear one-line error or the correct result.

Every input is made on the fly in ``tmp_path``. Command-line cases assert exit status 2,
exactly one line on stderr starting with ``error:`` and naming the file or argument, and that
no output appeared (or an old one is unchanged); library cases assert the error or the value.
Nothing here trains a network: where a check must come *before* training, the trainer is
replaced by one that fails the test if it is reached.
"""

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch

from emseg_tutorial import cli
from emseg_tutorial.cli import main
from emseg_tutorial.data.errors import DownloadError, VolumeError
from emseg_tutorial.data.outputs import check_outputs
from emseg_tutorial.data.readers import open_volume, read_image, read_labels, read_volume
from emseg_tutorial.data.writers import open_writers, write_volume
from emseg_tutorial.data.registry import cache_path, fetch
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.models import UNet2d
from emseg_tutorial.predict import predict_file, predict_probabilities
from emseg_tutorial.store import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def _unet(out_channels=2, in_channels=1, **kw):
    torch.manual_seed(0)
    return UNet2d(in_channels=in_channels, out_channels=out_channels, depth=2, base_width=4, **kw)


def _fails(argv, capsys, *names, before=None):
    """Run the CLI in-process: exit 2, one stderr line starting 'error:' that names every one of ``names``."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def _no_training(monkeypatch):
    """Make reaching the trainer fail the test: the check must come before it."""
    def boom(*args, **kwargs):
        raise AssertionError("training started before the outputs were checked")

    monkeypatch.setattr(cli, "train_supervised", boom)
    monkeypatch.setattr(cli, "run_method", boom)


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")


@pytest.fixture
def pair(tmp_path):
    vol = make_volume("fibsem", (3, 32, 32), seed=0)
    img, lab = tmp_path / "img.tif", tmp_path / "lab.tif"
    write_volume(img, vol.image, vol.voxel_size)
    write_volume(lab, vol.labels, vol.voxel_size)
    return img, lab


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _unet(2), config={"task": "boundary"})
    return path


def _cut(path: Path, to: Path, fraction=0.5) -> Path:
    data = path.read_bytes()
    to.write_bytes(data[:int(len(data) * fraction)])
    return to


# --------------------------------------------------------------------------- silent wrong results


@pytest.mark.parametrize("command", ["read_volume", "predict", "train", "evaluate"])
def test_truncated_tif_is_refused_with_page_counts(command, pair, model, tmp_path, capsys, monkeypatch):
    img, lab = pair
    cut = _cut(img, tmp_path / "cut.tif")
    if command == "read_volume":
        with pytest.raises(VolumeError, match=r"cut\.tif: file is cut short or damaged: 1 of the 3 pages"):
            read_volume(cut)
        return
    _no_training(monkeypatch)
    argv = {"predict": ["predict", "--model", model, "--image", cut, "--out", tmp_path / "p.tif", "--quiet"],
            "train": ["train", "--image", cut, "--labels", lab, "--task", "boundary", "--weights", "none",
                      "--out", tmp_path / "run", "--quiet"],
            "evaluate": ["evaluate", "--prediction", _cut(lab, tmp_path / "cut.tif"), "--labels", lab,
                         "--task", "boundary"]}[command]
    line = _fails(argv, capsys, "cut.tif", "cut short", "1 of the 3 pages")
    assert "codes" not in line and "shape" not in line  # not blamed on the values
    assert not (tmp_path / "p.tif").exists() and not (tmp_path / "run").exists()


def test_truncated_tif_without_metadata_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((6, 32, 32), np.uint8), metadata=None)
    cut = _cut(tmp_path / "plain.tif", tmp_path / "cut.tif")
    with pytest.raises(VolumeError, match=r"cut\.tif: file is cut short or damaged: 1 pages readable"):
        read_image(cut)


@pytest.mark.parametrize("kind", ["cut", "objects"])
def test_bad_npy_names_the_file(kind, tmp_path, capsys, model):
    path = tmp_path / "bad.npy"
    if kind == "cut":
        np.save(path, np.zeros((4, 32, 32), np.uint8))
        _cut(path, path, 0.3)
        match = "file is cut short"
    else:
        np.save(path, np.array([[[1]]], dtype=object), allow_pickle=True)
        match = "holds Python objects"
    with pytest.raises(VolumeError, match=rf"bad\.npy: {match}"):
        read_image(path)
    with pytest.raises(VolumeError, match=match):
        read_labels(path)
    _fails(["predict", "--model", model, "--image", path, "--out", tmp_path / "p.tif", "--quiet"], capsys,
           "bad.npy", match)


def test_prediction_and_probabilities_to_one_file_are_refused(pair, model, tmp_path, capsys):
    img, _ = pair
    p = tmp_path / "p.tif"
    _fails(["predict", "--model", model, "--image", img, "--out", p, "--probabilities", p, "--quiet"], capsys,
           "--probabilities", "--out", "p.tif", "own file")
    assert not p.exists()
    with pytest.raises(VolumeError, match="own file"):
        predict_file(_unet(), img, p, p)


def test_two_outputs_each_get_their_own_temporary_file(pair, model, tmp_path, capsys):
    img, _ = pair
    assert main(["predict", "--model", str(model), "--image", str(img), "--out", str(tmp_path / "p.npy"),
                 "--probabilities", str(tmp_path / "p.tif"), "--quiet"]) == 0
    codes, probs = np.load(tmp_path / "p.npy"), tifffile.imread(tmp_path / "p.tif")
    assert codes.shape == (3, 32, 32) and set(np.unique(codes)) <= {1, 2}
    assert probs.shape == (3, 2, 32, 32)  # ImageJ ZCYX
    np.testing.assert_array_equal(codes, probs.argmax(1) + 1)
    assert sorted(os.listdir(tmp_path)) == ["img.tif", "lab.tif", "m.pt", "p.npy", "p.tif"]


@pytest.mark.parametrize("head, match", [
    ("classes5", "predicts 5 classes, but a task has 2 (boundary) or 4 (multiclass)"),
    ("classes1", "predicts 1 classes"),
    ("nan", "hold NaN or infinite values"),
    ("in2", "takes 2 input channels"),
])
def test_predict_checks_the_model_first(head, match, pair, tmp_path, capsys):
    img, _ = pair
    net = {"classes5": lambda: _unet(5), "classes1": lambda: _unet(1), "nan": lambda: _unet(2),
           "in2": lambda: _unet(2, in_channels=2)}[head]()
    if head == "nan":
        with torch.no_grad():
            net.head.weight.fill_(float("nan"))
    path = tmp_path / f"{head}.pt"
    save_checkpoint(path, net)
    _fails(["predict", "--model", path, "--image", img, "--out", tmp_path / "p.tif", "--quiet"], capsys,
           f"{head}.pt", match)
    assert not (tmp_path / "p.tif").exists()
    with pytest.raises(ValueError, match=re.escape(match)):  # the library checks the same way
        predict_file(net, img, tmp_path / "p.tif")
    with pytest.raises(ValueError, match=re.escape(match)):
        predict_probabilities(net, np.zeros((1, 32, 32), np.uint8))


def test_a_user_module_predicting_one_class_writes_no_codes(pair, tmp_path):
    img, _ = pair
    with pytest.raises(VolumeError, match="predicts 1 classes, but label codes 1-4 need 2 to 4"):
        predict_file(torch.nn.Conv2d(1, 1, 1), img, tmp_path / "p.tif")
    assert not (tmp_path / "p.tif").exists()


def test_folder_of_mixed_dtype_slices_reads_the_same_both_ways(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    tifffile.imwrite(folder / "1.tif", np.full((8, 8), 3, np.uint8))
    tifffile.imwrite(folder / "2.tif", np.full((8, 8), 1000, np.uint16))
    tifffile.imwrite(folder / "10.tif", np.full((8, 8), 70000, np.uint32))
    whole, _ = read_image(folder)
    with open_volume(folder) as vol:
        assert vol.dtype == np.uint32
        streamed = np.concatenate([vol.read(z, z + 1) for z in range(3)])
    np.testing.assert_array_equal(whole[:, 0, 0], [3, 1000, 70000])
    np.testing.assert_array_equal(streamed, whole)


def test_folder_with_a_slice_of_another_shape_is_refused_when_opened(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    tifffile.imwrite(folder / "1.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(folder / "2.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(VolumeError, match=r"2\.tif: slice shape \(8, 9\) differs from 1\.tif's \(8, 8\)"):
        open_volume(folder)


@pytest.mark.parametrize("suffix", [".npy", ".h5:ids"])
def test_large_integers_are_stored_exactly(suffix, tmp_path):
    spec = f"{tmp_path / 'ids'}{suffix}"
    data = np.array([[[16777217, 0], [1, 2]]], np.int64)
    write_volume(spec, data)
    with open_volume(spec) as vol:
        back = vol.read_all()
    assert back.dtype == np.int64 and back[0, 0, 0] == 16777217


@pytest.mark.parametrize("data, match", [
    (np.array([[[16777217, 0]]], np.int64), "do not fit uint16, and a TIFF"),
    (np.ones((1, 2, 2), complex), "cannot store dtype complex128"),
])
def test_values_a_format_cannot_hold_are_refused(data, match, tmp_path):
    with pytest.raises(VolumeError, match=match):
        write_volume(tmp_path / "v.tif", data)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("writer", ["write_volume", "save_checkpoint"])
def test_outputs_get_the_umask_and_existing_files_keep_their_mode(writer, tmp_path):
    def write(path):
        if writer == "write_volume":
            write_volume(path, np.zeros((1, 4, 4), np.uint8))
        else:
            save_checkpoint(path, _unet())

    path = tmp_path / ("v.tif" if writer == "write_volume" else "m.pt")
    old = os.umask(0o027)
    try:
        write(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.chmod(path, 0o604)
        write(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o604
    finally:
        os.umask(old)
    os.umask(0o022)
    try:
        write(tmp_path / ("new" + path.suffix))
        assert stat.S_IMODE((tmp_path / ("new" + path.suffix)).stat().st_mode) == 0o644
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- data loss


def test_an_hdf5_group_named_as_output_is_refused_and_kept(pair, model, tmp_path, capsys):
    img, _ = pair
    h5 = tmp_path / "data.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("grp/raw", data=np.arange(4))
    _fails(["predict", "--model", model, "--image", img, "--out", f"{h5}:grp", "--quiet"], capsys,
           "--out", "data.h5:grp", "is an HDF5 group")
    with pytest.raises(VolumeError, match="'grp' is an HDF5 group in the file, not a dataset"):
        write_volume(f"{h5}:grp", np.zeros((1, 4, 4), np.uint8))
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["grp/raw"][()], np.arange(4))
    write_volume(f"{h5}:grp/pred", np.ones((1, 4, 4), np.uint8))  # a new dataset inside the group is fine
    with h5py.File(h5, "r") as f:
        assert sorted(f["grp"]) == ["pred", "raw"]


@pytest.mark.parametrize("same", ["tif", "relative", "hdf5"])
def test_predict_never_overwrites_its_input(same, pair, model, tmp_path, capsys, monkeypatch):
    img, _ = pair
    if same == "hdf5":
        spec = f"{tmp_path / 'v.h5'}:raw"
        write_volume(spec, read_image(img)[0])
        image, out = spec, f"{tmp_path / 'v.h5'}:/raw"
        before = (tmp_path / "v.h5").read_bytes()
    else:
        image, out = img, img
        before = img.read_bytes()
        if same == "relative":
            monkeypatch.chdir(tmp_path)
            out = Path("sub/../img.tif")
            (tmp_path / "sub").mkdir()
    _fails(["predict", "--model", model, "--image", image, "--out", out, "--quiet"], capsys,
           "--out", "is also the input --image")
    path = tmp_path / "v.h5" if same == "hdf5" else img
    assert path.read_bytes() == before


def test_synth_refuses_one_file_for_image_and_labels(tmp_path, capsys):
    x = tmp_path / "x.tif"
    _fails(["synth", "--domain", "snemi", "--shape", "2", "32", "32", "--image", x, "--labels", x, "--quiet"],
           capsys, "--labels", "x.tif", "is also the output --image")
    assert not x.exists()


def test_library_writers_refuse_one_target_twice(tmp_path):
    with pytest.raises(VolumeError, match="own file"):
        with open_writers([(tmp_path / "a.tif", (1, 4, 4), np.uint8), (tmp_path / "a.tif", (1, 4, 4), np.uint8)]):
            pass
    with pytest.raises(VolumeError, match="is also the input"):
        check_outputs([tmp_path / "a.npy"], [tmp_path / "a.npy"])
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- no tracebacks


@pytest.mark.parametrize("command", ["synth", "predict", "train", "adapt"])
def test_output_under_a_file_is_refused_before_any_work(command, pair, model, tmp_path, capsys, monkeypatch):
    img, lab = pair
    _no_training(monkeypatch)
    bad = tmp_path / "img.tif" / "x"
    argv = {"synth": ["synth", "--domain", "snemi", "--shape", "2", "32", "32", "--image", tmp_path / "ok.tif",
                      "--labels", f"{bad}.tif", "--quiet"],
            "predict": ["predict", "--model", model, "--image", img, "--out", f"{bad}.tif", "--quiet"],
            "train": ["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                      "--out", bad, "--quiet"],
            "adapt": ["adapt", "--model", model, "--source-labels", lab, "--target-image", img, "--out", bad,
                      "--quiet"]}[command]
    _fails(argv, capsys, str(bad), "is a file, not a folder")
    assert sorted(os.listdir(tmp_path)) == ["img.tif", "lab.tif", "m.pt"]  # synth left no half pair


@pytest.mark.parametrize("command", ["train", "adapt"])
def test_output_folder_that_is_a_file_is_refused_before_training(command, pair, model, tmp_path, capsys,
                                                                monkeypatch):
    img, lab = pair
    _no_training(monkeypatch)
    argv = {"train": ["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                      "--out", lab, "--quiet"],
            "adapt": ["adapt", "--model", model, "--source-labels", lab, "--target-image", img, "--out", lab,
                      "--quiet"]}[command]
    _fails(argv, capsys, "--out", "lab.tif", "is a file, not a folder")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a folder nobody can write in (Linux /proc)")
@pytest.mark.parametrize("command", ["predict", "train"])
def test_unwritable_output_is_named_before_any_work(command, pair, model, tmp_path, capsys, monkeypatch):
    img, lab = pair
    _no_training(monkeypatch)
    argv = {"predict": ["predict", "--model", model, "--image", img, "--out", "/proc/pred.tif", "--quiet"],
            "train": ["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                      "--out", "/proc/emseg-run", "--quiet"]}[command]
    line = _fails(argv, capsys, "--out", "cannot write in /proc")
    assert ".part" not in line and ".emseg" not in line  # no hidden temporary file named


@pytest.mark.parametrize("how", ["flag", "env"])
def test_bad_device_is_one_line_naming_its_source(how, pair, model, tmp_path, capsys, monkeypatch):
    img, _ = pair
    argv = ["predict", "--model", model, "--image", img, "--out", tmp_path / "p.tif", "--quiet"]
    if how == "flag":
        argv += ["--device", "bogus"]
        name = "--device='bogus'"
    else:
        monkeypatch.setenv("EMSEG_DEVICE", "bogus")
        name = "EMSEG_DEVICE='bogus'"
    _fails(argv, capsys, "unknown device 'bogus'", name)


def test_bad_device_from_the_environment_in_a_real_process(pair, model, tmp_path):
    img, _ = pair
    env = {**os.environ, "EMSEG_DEVICE": "bogus", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "emseg_tutorial", "predict", "--model", str(model), "--image",
                           str(img), "--out", str(tmp_path / "p.tif"), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown device 'bogus'; expected one of ('cpu', 'cuda', 'mps') or 'auto' "
        "(from environment variable EMSEG_DEVICE='bogus')"]


@pytest.mark.parametrize("method", ["paper", "adabn"])
def test_adapt_to_a_target_smaller_than_the_patch_is_refused_before_training(method, pair, model, tmp_path,
                                                                             capsys):
    img, lab = pair
    tiny = tmp_path / "tiny.tif"
    write_volume(tiny, np.full((1, 1, 1), 7, np.uint8))
    _fails(["adapt", "--model", model, "--source-labels", lab, "--target-image", tiny,
            "--method", method, "--out", tmp_path / "run", "--quiet"]
           + (["--epochs", "1", "--steps", "1"] if method == "paper" else []), capsys,
           "tiny.tif", "slices of 1 x 1 pixels are too small to adapt to", "at least 16 x 16")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["output", "input"])
def test_a_file_named_h5_that_is_not_hdf5(where, pair, model, tmp_path, capsys):
    img, _ = pair
    fake = tmp_path / "fake.h5"
    fake.write_text("not HDF5")
    if where == "output":
        _fails(["predict", "--model", model, "--image", img, "--out", f"{fake}:pred", "--quiet"], capsys,
               "--out", "fake.h5", "exists but is not an HDF5 file")
    else:
        _fails(["predict", "--model", model, "--image", f"{fake}:raw", "--out", tmp_path / "p.tif", "--quiet"],
               capsys, "fake.h5", "cannot be read as HDF5")
    assert fake.read_text() == "not HDF5"


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from emseg_tutorial.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="resource limits are POSIX")
@pytest.mark.parametrize("command", ["synth", "predict"])
def test_full_disk_is_one_line_and_keeps_the_old_output(command, pair, model, tmp_path):
    img, _ = pair
    out = tmp_path / ("big.tif" if command == "synth" else "pred.npy")
    if command == "synth":
        write_volume(out, np.zeros((1, 8, 8), np.uint8))
        argv = ["synth", "--domain", "snemi", "--shape", "8", "128", "128", "--image", out, "--labels",
                tmp_path / "big_labels.tif", "--quiet"]
    else:
        write_volume(out, np.zeros((1, 8, 8), np.uint8))
        argv = ["predict", "--model", model, "--image", img, "--out", tmp_path / "codes.tif", "--probabilities",
                out, "--quiet"]
    before = out.read_bytes()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "EMSEG_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, "20000", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(out) in lines[0] or str(tmp_path / "big_labels.tif") in lines[0]
    assert "could not be written (" in lines[0] and "unchanged" in lines[0]
    assert out.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    assert not (tmp_path / "big_labels.tif").exists() and not (tmp_path / "codes.tif").exists()


def test_huge_tolerance_is_refused(pair, capsys):
    _, lab = pair
    _fails(["evaluate", "--prediction", lab, "--labels", lab, "--task", "boundary", "--tolerance", "1e9"], capsys,
           "--tolerance", "<= 64")


# --------------------------------------------------------------------------- unclear messages


@pytest.mark.parametrize("command", ["synth", "train", "adapt"])
def test_negative_seed_names_the_argument(command, pair, model, tmp_path, capsys):
    img, lab = pair
    argv = {"synth": ["synth", "--domain", "snemi", "--shape", "2", "32", "32", "--image", tmp_path / "a.tif",
                      "--labels", tmp_path / "b.tif"],
            "train": ["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                      "--out", tmp_path / "run"],
            "adapt": ["adapt", "--model", model, "--source-labels", lab, "--target-image", img, "--out",
                      tmp_path / "run"]}[command]
    _fails(argv + ["--seed", "-1"], capsys, "argument --seed", "from 0 to 4294967295, got -1")


def test_init_checkpoint_with_other_input_channels_names_the_file(pair, tmp_path, capsys, monkeypatch):
    img, lab = pair
    _no_training(monkeypatch)
    path = tmp_path / "rgb_in.pt"
    save_checkpoint(path, _unet(2, in_channels=3))
    _fails(["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none", "--init", path,
            "--out", tmp_path / "run", "--quiet"], capsys, "rgb_in.pt", "takes 3 input channels")


def test_weights_that_disagree_with_their_settings_are_one_short_line(pair, model, tmp_path, capsys):
    img, _ = pair
    ckpt = torch.load(model, weights_only=True)
    ckpt["model"]["base_width"] = 8
    bad = tmp_path / "bad_settings.pt"
    torch.save(ckpt, bad)
    line = _fails(["predict", "--model", bad, "--image", img, "--out", tmp_path / "p.tif", "--quiet"], capsys,
                  "bad_settings.pt", "weights do not fit the network its settings describe",
                  "tensors of other shapes")
    assert len(line) < 400


def test_random_bytes_are_not_called_a_pickle(pair, tmp_path, capsys):
    img, _ = pair
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(1, 127, 1000, dtype=np.uint8).tobytes())
    line = _fails(["predict", "--model", path, "--image", img, "--out", tmp_path / "p.tif", "--quiet"], capsys,
                  "noise.pt", "not a PyTorch checkpoint")
    assert "objects other than tensors" not in line
    with pytest.raises(ValueError, match="is a folder, not a checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("out, match", [("folder", "is a folder; name a file inside it"),
                                        ("results", "has no file suffix"),
                                        ("pred.txt", "unknown output format '.txt'")])
def test_output_names_that_are_no_file_format(out, match, pair, model, tmp_path, capsys):
    img, _ = pair
    (tmp_path / "folder").mkdir()
    line = _fails(["predict", "--model", model, "--image", img, "--out", tmp_path / out, "--quiet"], capsys,
                  "--out", match)
    assert "''" not in line


def test_rgb_tif_is_not_a_volume(tmp_path):
    tifffile.imwrite(tmp_path / "photo.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    with pytest.raises(VolumeError, match=r"photo\.tif: RGB/multi-sample images are not EM volumes"):
        read_volume(tmp_path / "photo.tif")


def test_fetch_into_a_folder_or_an_unusable_cache_says_nothing_was_downloaded(tmp_path, monkeypatch):
    import emseg_tutorial.data.registry as registry

    def no_network(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(registry, "_downloader", no_network)
    target = cache_path("isbi2012", cache=tmp_path)
    target.mkdir(parents=True)
    with pytest.raises(DownloadError, match=r"isbi2012\.h5 is a folder, where the dataset file"):
        fetch("isbi2012", cache=tmp_path, progress=False)
    blocker = tmp_path / "cache_is_a_file"
    blocker.write_text("")
    with pytest.raises(DownloadError, match="cannot be made or written .*nothing was downloaded"):
        fetch("isbi2012", cache=blocker, progress=False)


# =========================================================================== interrupt (issue 24, item 3)
# SIGINT / SIGTERM from inside the work: one line, exit 130 / 143, no traceback, no temporary file
# (tests/test_interrupt.py has the real-process signal, train/adapt resumes and zarr predictions).


@pytest.fixture
def terminal_sigint():
    """SIGINT as in a terminal (a runner may start the tests ignoring it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_at(monkeypatch, owner, name, nth, sig=signal.SIGTERM, after=False):
    real, calls = getattr(owner, name), []

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth and not after:
            signal.raise_signal(sig)
        result = real(*args, **kwargs)
        if len(calls) == nth and after:
            signal.raise_signal(sig)
        return result

    monkeypatch.setattr(owner, name, signalling)


def _interrupted(argv, capsys, sig):
    assert main([str(a) for a in argv]) == 128 + sig
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"interrupted ({signal.Signals(sig).name})"), lines[0]
    return lines[0]


def _temporary(folder):
    return [p.name for p in Path(folder).rglob("*") if p.name.endswith((".part", ".partial"))]


@pytest.mark.parametrize("where", ["rendering", "writing the labels"])
def test_interrupted_synth_writes_neither_file(where, tmp_path, capsys, monkeypatch, terminal_sigint):
    from emseg_tutorial.data import writers
    from emseg_tutorial.data.synthetic import blocks

    if where == "rendering":
        _interrupt_at(monkeypatch, blocks, "_render_range", 1)
    else:
        _interrupt_at(monkeypatch, writers._TiffWriter, "_write", 2, signal.SIGINT)
    sig = signal.SIGTERM if where == "rendering" else signal.SIGINT
    line = _interrupted(["synth", "--domain", "fibsem", "--shape", 4, 64, 64, "--image", tmp_path / "i.tif",
                         "--labels", tmp_path / "l.tif", "--quiet"], capsys, sig)
    assert line.endswith("; nothing was written (files already there are unchanged)")
    assert sorted(os.listdir(tmp_path)) == []


def test_a_signal_between_two_renames_waits_for_both(pair, model, tmp_path, capsys, monkeypatch):
    import emseg_tutorial.data.writers as writers

    img, _ = pair
    _interrupt_at(monkeypatch, writers.os, "replace", 1, after=True)
    line = _interrupted(["predict", "--model", model, "--image", img, "--out", tmp_path / "p.tif",
                         "--probabilities", tmp_path / "q.npy", "--quiet"], capsys, signal.SIGTERM)
    assert line == f"interrupted (SIGTERM) after writing {tmp_path / 'p.tif'} and {tmp_path / 'q.npy'}"
    assert (tmp_path / "p.tif").exists() and (tmp_path / "q.npy").exists() and not _temporary(tmp_path)


def test_a_second_signal_during_the_clean_up_is_ignored(pair, model, tmp_path, capsys, monkeypatch,
                                                        terminal_sigint):
    from emseg_tutorial.data import writers
    from emseg_tutorial.predict import stream

    img, _ = pair
    _interrupt_at(monkeypatch, stream, "predict_slices", 1, signal.SIGINT)
    _interrupt_at(monkeypatch, writers._NpyWriter, "close", 1, signal.SIGINT)  # Ctrl-C again, while cleaning
    _interrupted(["predict", "--model", model, "--image", img, "--out", tmp_path / "p.npy", "--quiet"], capsys,
                 signal.SIGINT)
    assert not (tmp_path / "p.npy").exists() and not _temporary(tmp_path)


def test_interrupted_evaluate_is_one_line(pair, capsys, monkeypatch, terminal_sigint):
    _, lab = pair
    _interrupt_at(monkeypatch, cli, "evaluate", 1, signal.SIGINT)
    assert _interrupted(["evaluate", "--prediction", lab, "--labels", lab, "--task", "multiclass"], capsys,
                        signal.SIGINT) == "interrupted (SIGINT)"


def test_interrupted_export_leaves_no_work_folder(model, tmp_path, capsys, monkeypatch):
    pytest.importorskip("bioimageio.spec")
    import tempfile

    from emseg_tutorial.predict import export

    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    _interrupt_at(monkeypatch, export, "_cover", 1)
    _interrupted(["export", "--model", model, "--out", tmp_path / "pkg"], capsys, signal.SIGTERM)
    assert os.listdir(work) == [] and not (tmp_path / "pkg").exists()


def test_the_resumable_state_of_an_interrupted_run_is_the_last_whole_one(pair, tmp_path, capsys, monkeypatch):
    from emseg_tutorial.store import load_training_state
    from emseg_tutorial.train import supervised

    img, lab = pair
    _interrupt_at(monkeypatch, supervised.torch, "save", 2, after=True)  # the state of step 4, before its rename
    real = cli.train_config

    def every_two(*args, **kwargs):
        import dataclasses

        return dataclasses.replace(real(*args, **kwargs), val_every=2)

    monkeypatch.setattr(cli, "train_config", every_two)
    line = _interrupted(["train", "--image", img, "--labels", lab, "--task", "boundary", "--weights", "none",
                         "--steps", 4, "--out", tmp_path / "run", "--quiet"], capsys, signal.SIGTERM)
    assert line.endswith(f"--resume {tmp_path / 'run'}`")
    assert load_training_state(tmp_path / "run" / "state.pt")["step"] == 2 and not _temporary(tmp_path)
