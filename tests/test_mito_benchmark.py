"""The VNC -> Lucchi++ mitochondria benchmark (issue 23): the twins' pair at ci, the CLI's table,
JSON and figure, the published rows, the Lucchi++ loader and real mode on made-up downloads."""

import json
import re
import zipfile

import numpy as np
import pytest

from emseg_tutorial.cli import main
from emseg_tutorial.data.real import LUCCHI_FOLDERS, load_lucchi_pp
from emseg_tutorial.data.registry import DownloadError
from emseg_tutorial.paper import mito_benchmark as mb
from emseg_tutorial.session import from_env
from test_real import _pin, _png, make_vnc_zip, offline  # noqa: F401 (offline: a fixture)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One runs folder for the module: the CLI run trains the models, the library call reads them back."""
    return tmp_path_factory.mktemp("runs")


def test_the_twins_carry_the_mitochondria_pair(runs, monkeypatch):
    monkeypatch.setenv("EMSEG_RUNS", str(runs))
    volumes = mb.benchmark_volumes(from_env(preset="ci", data="synthetic", device="cpu").replace(progress=False))
    assert set(volumes) == {"source", "source_val", "target", "target_eval"}
    for key, vol in volumes.items():
        assert (vol.labels == 3).mean() > 0.005, key  # mitochondria (code 3) in every split
    assert volumes["source"].voxel_size != volumes["target"].voxel_size  # another size in pixels


def test_cli_benchmark_on_the_twins_prints_every_row_and_writes_json_and_figure(runs, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.setenv("EMSEG_RUNS", str(runs))
    out = tmp_path / "bench"
    assert main(["benchmark", "vnc-lucchi", "--data", "synthetic", "--preset", "ci", "--device", "cpu",
                 "--quiet", "--out", out]) == 0
    text = capsys.readouterr().out
    rows = ["source-only", "oracle", *[f"{m}, {s}" for m in mb.DEFAULT_METHODS for s in ("last", "label-free")],
            *[f"{p.method} [published]" for p in mb.PUBLISHED]]
    for row in rows:
        assert row in text, row
    assert "0.6865" in text and "0.8918" in text and "[DA-ISC]" in text and "[PyTC]" in text
    data = json.loads((out / "vnc-lucchi.json").read_text())
    assert data["task"] == "mitochondria" and data["data"] == "synthetic" and data["preset"] == "ci"
    assert {r["method"] for r in data["runs"]} == set(mb.DEFAULT_METHODS)
    for run in data["runs"]:
        assert {"foreground_iou", "foreground_f1", "foreground_mcc", "foreground_ap"} <= set(run["label_free"])
    assert [p["method"] for p in data["published"]] == [p.method for p in mb.PUBLISHED]
    assert (out / "vnc-lucchi.png").read_bytes()[:4] == b"\x89PNG"
    # a second run into the same folder needs --overwrite (nothing trained first)
    assert main(["benchmark", "vnc-lucchi", "--data", "synthetic", "--preset", "ci", "--quiet", "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_the_library_call_reads_the_runs_back_and_its_table_has_the_gap(runs, monkeypatch):
    monkeypatch.setenv("EMSEG_RUNS", str(runs))
    session = from_env(preset="ci", data="synthetic", device="cpu").replace(progress=False)
    bench = mb.run_benchmark(session, methods=["adabn", "adaptsegnet"], seeds=2)
    assert bench.comparison.reused == 3 and bench.comparison.settings["seeds"] == [0, 1]
    table = mb.benchmark_table(bench)
    assert list(table.columns[:6]) == ["IoU", "F1", "MCC", "AP", "n", "gap closed"]
    assert table.loc["adaptsegnet, label-free", "n"] == 2 and "±" in table.loc["adaptsegnet, last", "IoU"]
    assert table.loc["DA-ISC, subset 2 [published]", "IoU"] == "0.7431"
    numbers = mb.benchmark_numbers(bench)
    assert numbers["top_on_labels"] in ("adabn", "adaptsegnet") and numbers["pytc_iou"] == 0.8918
    gap = bench.comparison.gap
    assert gap.source_only == bench.source_only["foreground_iou"] and gap.oracle == bench.oracle["foreground_iou"]


def test_the_published_rows_are_the_cited_numbers():
    daisc1, daisc2, pytc = mb.PUBLISHED
    assert daisc1.scores == {"foreground_ap": 0.8948, "foreground_f1": 0.8129, "foreground_mcc": 0.8053,
                             "foreground_iou": 0.6865}
    assert daisc2.scores == {"foreground_ap": 0.9244, "foreground_f1": 0.8518, "foreground_mcc": 0.8448,
                             "foreground_iou": 0.7431}
    assert pytc.scores == {"foreground_iou": 0.8918}
    assert all(p.ref in mb.REFERENCES and p.selection for p in mb.PUBLISHED)


def test_an_unknown_method_is_refused_before_any_work(capsys, tmp_path):
    assert main(["benchmark", "vnc-lucchi", "--methods", "dann", "--out", tmp_path / "b"]) == 2
    assert "invalid choice: 'dann'" in capsys.readouterr().err and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="unknown method 'dann'"):
        mb.run_benchmark(from_env(preset="ci", device="cpu"), methods=["dann"])


# --------------------------------------------------------------------------- real mode


def make_lucchi_zip(path, nz=6, shape=(140, 150), rgba=False):
    """A zip laid out like Lucchi++'s: {Train,Test}_In/mask%04d.png images, {Train,Test}_Out/%d.png masks."""
    rng = np.random.default_rng(1)
    masks = {}
    with zipfile.ZipFile(path, "w") as z:
        for split, (images, labels) in LUCCHI_FOLDERS.items():
            yy, xx = np.mgrid[: shape[0], : shape[1]]
            mask = np.stack([(((yy - 40 - 5 * k) ** 2 + (xx - 60) ** 2) < 400) * 255 for k in range(nz)]).astype(np.uint8)
            masks[split] = mask
            for k in range(nz):
                image = rng.integers(60, 200, shape).astype(np.uint8) - (mask[k] > 0) * 50
                z.writestr(f"Lucchi++/{images}/mask{k:04d}.png", _png(image))
                m = np.repeat(mask[k][..., None], 4, -1) if rgba else mask[k]
                z.writestr(f"Lucchi++/{labels}/{k}.png", _png(m))
    return masks


@pytest.mark.parametrize("rgba", [False, True])
def test_load_lucchi_pp_reads_each_split_folder_as_mitochondria_and_the_rest(tmp_path, rgba):
    masks = make_lucchi_zip(tmp_path / "l.zip", nz=3, shape=(40, 50), rgba=rgba)
    for split in ("train", "test"):
        vol = load_lucchi_pp(tmp_path / "l.zip", split)
        assert vol.shape == (3, 40, 50) and vol.voxel_size == (5.0, 5.0, 5.0)
        np.testing.assert_array_equal(vol.labels == 3, masks[split] == 255)
        assert set(np.unique(vol.labels)) == {2, 3}


def test_real_mode_offline_names_both_files_and_where_to_put_them(offline, capsys, tmp_path):  # noqa: F811
    assert main(["benchmark", "vnc-lucchi", "--data", "real", "--preset", "ci", "--quiet",
                 "--out", tmp_path / "b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: the VNC -> Lucchi++ benchmark needs 2 files")
    for path in (offline / "vnc" / "groundtruth-drosophila-vnc-master.zip", offline / "lucchi_pp" / "lucchi_pp.zip"):
        assert str(path) in err
    assert "EMSEG_CACHE" in err and not (tmp_path / "b").exists()


def test_real_mode_with_the_downloads_in_the_cache(offline, monkeypatch, tmp_path):  # noqa: F811
    (offline / "vnc").mkdir(parents=True)
    (offline / "lucchi_pp").mkdir()
    make_vnc_zip(offline / "vnc" / "groundtruth-drosophila-vnc-master.zip", nz=8, shape=(140, 150))
    make_lucchi_zip(offline / "lucchi_pp" / "lucchi_pp.zip")
    _pin(monkeypatch, "vnc", offline / "vnc" / "groundtruth-drosophila-vnc-master.zip")
    _pin(monkeypatch, "lucchi_pp", offline / "lucchi_pp" / "lucchi_pp.zip")
    monkeypatch.setenv("EMSEG_RUNS", str(tmp_path / "runs"))
    session = from_env(preset="ci", device="cpu").replace(progress=False)
    bench = mb.run_benchmark(session, methods=["adabn"], seeds=1)
    assert bench.data == "real" and re.match(r"Lucchi\+\+ test \(6, 128, 128\)", bench.volumes["target_eval"])
    assert bench.volumes["source"].startswith("VNC stack 1 (6, 128, 128)")
    assert "source-only (VNC model)" in mb.benchmark_table(bench).index
