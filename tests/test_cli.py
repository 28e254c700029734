"""The command line, end to end in a subprocess and in-process for error paths."""

import subprocess
import sys

import numpy as np
import pytest

from emseg_tutorial.cli import main
from emseg_tutorial.data.readers import read_volume


def test_synth_end_to_end(tmp_path):
    img, lab = tmp_path / "t.tif", tmp_path / "l.tif"
    proc = subprocess.run(
        [sys.executable, "-m", "emseg_tutorial", "synth", "--domain", "snemi", "--shape", "16", "128", "128",
         "--seed", "3", "--image", str(img), "--labels", str(lab)],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    vol = read_volume(img, lab)
    assert vol.shape == (16, 128, 128) and vol.voxel_size == (30.0, 6.0, 6.0)
    assert set(np.unique(vol.labels)) <= {1, 2, 3}


@pytest.mark.parametrize(
    "argv, match",
    [
        (["synth", "--domain", "isbi", "--shape", "4", "64", "64", "--image", "a.tif", "--labels", "b.tif"],
         "invalid choice"),
        (["synth", "--domain", "fibsem", "--shape", "4", "64", "--image", "a.tif", "--labels", "b.tif"],
         "expected 3 arguments"),
        (["synth", "--domain", "fibsem", "--shape", "4", "8", "64", "--image", "a.tif", "--labels", "b.tif"],
         "at least 16"),
        (["synth", "--domain", "fibsem", "--shape", "4", "-1", "64", "--image", "a.tif", "--labels", "b.tif"],
         "positive integer"),
        (["synth", "--domain", "fibsem", "--shape", "4", "64", "64", "--image", "a.tif", "--labels", "b.txt"],
         "unknown output format"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    assert match in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "synth" in capsys.readouterr().out
