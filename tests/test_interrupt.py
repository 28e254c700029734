"""Interrupted commands (issue 24, item 3): SIGINT and SIGTERM end a command with one line, exit
130 / 143, no traceback, no temporary file, and a resumable state that resumes exactly.

The signal is sent from inside the work (a step function replaced by one that signals at its
n-th call), never by a timer racing it. Real processes (``python -m emseg_tutorial``) show the
exit status and the absence of a traceback as a shell sees them; in-process runs show that the
resume the line suggests finishes and equals an uninterrupted run.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from emseg_tutorial import cli
from emseg_tutorial.cli import main
from emseg_tutorial.data.readers import read_labels
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.interrupt import Interrupted, deferred, handle_signals
from emseg_tutorial.models import UNet2d
from emseg_tutorial.store import load_checkpoint, load_training_state, save_checkpoint

from helpers import signal_at

ROOT = Path(__file__).resolve().parents[1]
TINY = {"depth": 2, "base_width": 4, "norm": "batch"}
TEMPORARY = (".part", ".partial")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def _ci(monkeypatch):
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")
    monkeypatch.setenv("EMSEG_PRESET", "ci")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever the runner
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_signal_the_process_ignores_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with handle_signals():
            signal.raise_signal(signal.SIGTERM)  # nohup-like: nothing happens
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def _leftovers(folder: Path) -> list[str]:
    """Temporary files anywhere under ``folder`` (ours ``.NAME.*.part``, zarr's ``*.partial``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(TEMPORARY))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _continue_argv(line: str) -> list[str]:
    """The arguments of the command the line says to continue with (after ``python -m emseg_tutorial``)."""
    command = line.split("`")[1]
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "emseg_tutorial"], command
    return words[3:]


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def image_and_model(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (12, 32, 32), dtype=np.uint8)  # 3 blocks of 4 slices
    write_volume(tmp_path / "img.tif", image)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", UNet2d(out_channels=2, **TINY))
    return tmp_path / "img.tif", tmp_path / "m.pt"


# --------------------------------------------------------------------------- the signal machinery


def test_handlers_are_restored_and_a_second_signal_does_not_cut_the_clean_up_short():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cleaned = []
    with handle_signals():
        with pytest.raises(Interrupted) as caught:
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                signal.raise_signal(signal.SIGINT)  # a second Ctrl-C while cleaning up: ignored
                cleaned.append(True)
    assert caught.value.name == "SIGTERM" and caught.value.exit_status == 143
    assert isinstance(caught.value, KeyboardInterrupt)  # so `except Exception` never swallows it
    assert cleaned == [True]
    assert {s: signal.getsignal(s) for s in before} == before


def test_deferred_steps_finish_before_the_signal_is_raised():
    done = []
    with handle_signals():
        with pytest.raises(Interrupted, match="2"):
            with deferred():
                with deferred():
                    signal.raise_signal(signal.SIGINT)
                    done.append("inner")
                done.append("outer")
    assert done == ["inner", "outer"]
    with deferred():  # outside handle_signals: nothing to defer, nothing raised
        done.append("plain")


def test_handle_signals_in_another_thread_leaves_the_handlers_alone():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def run():
        with handle_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [before] and signal.getsignal(signal.SIGTERM) == before


def test_main_restores_the_handlers(image_and_model, tmp_path, monkeypatch, capsys):
    image, model = image_and_model
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(["predict", "--model", model, "--image", image, "--out", tmp_path / "p.tif", "--quiet"]) == 0
    from emseg_tutorial.predict import stream

    signal_at(monkeypatch, stream, "predict_slices", 1)
    assert main(["predict", "--model", model, "--image", image, "--out", tmp_path / "q.tif", "--quiet"]) == 143
    capsys.readouterr()
    assert {s: signal.getsignal(s) for s in before} == before


def test_continue_command_replaces_out_and_overwrite_by_resume():
    argv = ["train", "--image", "a b.tif", "--out=run", "--overwrite", "--steps", "4", "--ou", "x", "--quiet"]
    assert cli._continue_command(argv, "run") == \
        "python -m emseg_tutorial train --image 'a b.tif' --steps 4 --quiet --resume run"


# --------------------------------------------------------------------------- predict


_DRIVER = textwrap.dedent("""
    import pathlib, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever the parent ignores
    from emseg_tutorial.predict import stream
    real, calls = stream.predict_slices, []

    def waiting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first block is in the temporary files: tell the test, wait for its signal
            pathlib.Path(sys.argv[1]).touch()
            while True:
                time.sleep(0.01)
        return real(*args, **kwargs)

    stream.predict_slices = waiting
    from emseg_tutorial.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_from_outside_during_predict_leaves_no_temporary_file(sig, image_and_model, tmp_path):
    image, model = image_and_model
    old = b"an older prediction"
    (tmp_path / "pred.tif").write_bytes(old)
    driver, ready = tmp_path / "driver.py", tmp_path / "ready"
    driver.write_text(_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, driver, ready, "predict", "--model", model, "--image", image,
                             "--out", tmp_path / "pred.tif", "--probabilities", tmp_path / "prob.npy", "--quiet"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(12000):  # the driver says when it is inside the write (at most 120 s)
            if ready.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.01)
        assert ready.exists(), proc.communicate()[1]
        assert _leftovers(tmp_path)  # the first block is being written beside the targets
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines() == [f"interrupted ({signal.Signals(sig).name}); nothing was written "
                                        "(files already there are unchanged)"], err
    assert _leftovers(tmp_path) == []
    assert (tmp_path / "pred.tif").read_bytes() == old and not (tmp_path / "prob.npy").exists()


@pytest.mark.parametrize("out", ["pred.npy", "data.h5:pred"])
def test_interrupted_predict_in_process_keeps_nothing(out, image_and_model, tmp_path, monkeypatch, capsys):
    from emseg_tutorial.predict import stream

    image, model = image_and_model
    signal_at(monkeypatch, stream, "predict_slices", 2, signal.SIGINT)
    assert main(["predict", "--model", model, "--image", image, "--out", tmp_path / out, "--quiet"]) == 130
    assert _one_line(capsys).startswith("interrupted (SIGINT); nothing was written")
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", "m.pt"]


def test_interrupted_zarr_prediction_resumes_with_the_same_command(image_and_model, tmp_path, monkeypatch, capsys):
    from emseg_tutorial.predict import stream

    image, model = image_and_model
    argv = ["predict", "--model", str(model), "--image", str(image), "--out", str(tmp_path / "p.zarr"),
            "--probabilities", str(tmp_path / "prob.zarr"), "--quiet"]
    assert main(argv[:5] + ["--out", str(tmp_path / "whole.tif"), "--quiet"]) == 0
    with monkeypatch.context() as m:
        calls = signal_at(m, stream, "predict_slices", 2)
        assert main(argv) == 143
    line = _one_line(capsys)
    assert line.startswith("interrupted (SIGTERM); continue with the same command (`python -m emseg_tutorial "
                           "predict ") and line.endswith(f"the slices already in {tmp_path / 'p.zarr'} and "
                                                         f"{tmp_path / 'prob.zarr'} are kept")
    assert _continue_argv(line) == argv
    assert _leftovers(tmp_path) == []
    with monkeypatch.context() as m:
        calls = signal_at(m, stream, "predict_slices", 99)
        assert main(_continue_argv(line)) == 0, capsys.readouterr().err
    assert len(calls) == 2  # the first block was kept; the other two predicted
    np.testing.assert_array_equal(read_labels(tmp_path / "p.zarr"), read_labels(tmp_path / "whole.tif"))


def test_a_zarr_prediction_stopped_before_its_output_began_has_nothing_to_continue(tmp_path):
    args = cli.build_parser().parse_args(["predict", "--model", "m.pt", "--image", "i.tif", "--out",
                                          str(tmp_path / "p.zarr"), "--cluster", "local:1"])
    assert cli._interrupted_line(signal.SIGTERM, args, [], 0.0) == \
        "interrupted (SIGTERM); nothing was written (files already there are unchanged)"


# --------------------------------------------------------------------------- train


@pytest.fixture
def train_args(tmp_path, monkeypatch):
    """A 4-step CLI training that writes its state every 2 steps; returns its argv without --out."""
    vol = make_volume("fibsem", (6, 48, 48), seed=0)
    write_volume(tmp_path / "img.tif", vol.image)
    write_volume(tmp_path / "lab.tif", vol.labels)
    real = cli.train_config

    def every_two(*args, **kwargs):
        import dataclasses

        return dataclasses.replace(real(*args, **kwargs), val_every=2)

    monkeypatch.setattr(cli, "train_config", every_two)
    return ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"), "--task",
            "boundary", "--weights", "distance", "--steps", "4", "--quiet"]


def test_interrupted_training_says_how_to_continue_and_the_resume_is_exact(train_args, tmp_path, monkeypatch,
                                                                            capsys):
    from emseg_tutorial.train import supervised

    assert main(train_args + ["--out", str(tmp_path / "full")]) == 0
    with monkeypatch.context() as m:
        signal_at(m, supervised, "training_step", 3)  # step 3: after the state of step 2
        assert main(train_args + ["--out", str(tmp_path / "run")]) == 143
    line = _one_line(capsys)
    assert line.startswith("interrupted (SIGTERM); continue with `python -m emseg_tutorial train ")
    assert line.endswith(f"--resume {tmp_path / 'run'}`")
    assert load_training_state(tmp_path / "run" / "state.pt")["step"] == 2
    assert not (tmp_path / "run" / "model.pt").exists() and _leftovers(tmp_path) == []
    assert main(_continue_argv(line)) == 0, capsys.readouterr().err
    full, _ = load_checkpoint(tmp_path / "full" / "model.pt")
    resumed, ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert _same_weights(full, resumed) and ckpt["history"]["train"]["step"] == [1, 2, 3, 4]


def test_a_state_being_saved_when_the_signal_comes_is_not_half_written(train_args, tmp_path, monkeypatch, capsys):
    from emseg_tutorial.store import checkpoint

    real, saves = checkpoint.atomic_write, []

    def interrupted_second_save(path, write):
        saves.append(path)

        def then_signal(tmp):
            write(tmp)  # the new state is complete in the temporary file, not yet renamed
            if len(saves) == 2:
                signal.raise_signal(signal.SIGINT)

        real(path, then_signal)

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "atomic_write", interrupted_second_save)
        assert main(train_args + ["--out", str(tmp_path / "run")]) == 130
    line = _one_line(capsys)
    assert line.startswith("interrupted (SIGINT); continue with `")
    assert load_training_state(tmp_path / "run" / "state.pt")["step"] == 2  # the last whole state
    assert _leftovers(tmp_path) == []
    assert main(_continue_argv(line)) == 0
    assert main(train_args + ["--out", str(tmp_path / "full")]) == 0
    assert _same_weights(load_checkpoint(tmp_path / "full" / "model.pt")[0],
                         load_checkpoint(tmp_path / "run" / "model.pt")[0])


def test_training_interrupted_before_its_first_state_says_so(train_args, tmp_path, monkeypatch, capsys):
    from emseg_tutorial.train import supervised

    signal_at(monkeypatch, supervised, "training_step", 1)
    assert main(train_args + ["--out", str(tmp_path / "run")]) == 143
    assert _one_line(capsys) == (f"interrupted (SIGTERM) before the first resumable state "
                                 f"({tmp_path / 'run' / 'state.pt'}) was written; run the same command to start again")
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- adapt


@pytest.fixture
def adapt_args(tmp_path):
    src, tgt = make_volume("fibsem", (6, 48, 48), seed=0), make_volume("snemi", (4, 48, 48), seed=1)
    for name, data in {"sl.tif": src.labels, "t.tif": tgt.image}.items():
        write_volume(tmp_path / name, data)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m3.pt", UNet2d(out_channels=2, **TINY))
    return ["adapt", "--model", str(tmp_path / "m3.pt"), "--source-labels", str(tmp_path / "sl.tif"),
            "--target-image", str(tmp_path / "t.tif"), "--quiet"]


def test_interrupted_adaptation_continues_exactly(adapt_args, tmp_path, monkeypatch, capsys):
    from emseg_tutorial.adapt import loop

    argv = adapt_args + ["--method", "paper", "--epochs", "2", "--steps", "2"]
    assert main(argv + ["--out", str(tmp_path / "full")]) == 0, capsys.readouterr().err
    with monkeypatch.context() as m:
        signal_at(m, loop, "save_adaptation_state", 1, after=True)  # just after epoch 1's state
        assert main(argv + ["--out", str(tmp_path / "run")]) == 143
    line = _one_line(capsys)
    assert line.startswith("interrupted (SIGTERM); continue with `python -m emseg_tutorial adapt ")
    assert line.endswith(f"--resume {tmp_path / 'run'}`")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "run" / "model.pt").exists()
    assert main(_continue_argv(line)) == 0, capsys.readouterr().err
    full, _ = load_checkpoint(tmp_path / "full" / "model.pt")
    resumed, ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert _same_weights(full, resumed) and [e["epoch"] for e in ckpt["history"]["epochs"]] == [0, 1, 2]


def test_interrupted_one_pass_adaptation_has_nothing_to_resume(adapt_args, tmp_path, monkeypatch, capsys):
    signal_at(monkeypatch, cli, "run_method", 1, signal.SIGINT)
    assert main(adapt_args + ["--method", "adabn", "--out", str(tmp_path / "run")]) == 130
    assert _one_line(capsys) == ("interrupted (SIGINT); method adabn runs in one pass, so there is nothing to "
                                 "resume: run it again")
    assert _leftovers(tmp_path) == []


_CLUSTER_DRIVER = textwrap.dedent("""
    import pathlib, signal, sys, time
    if __name__ == "__main__":
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from emseg_tutorial.predict import distributed

        def waiting(*args, **kwargs):  # the cluster is up, its workers started: tell the test, wait
            pathlib.Path(sys.argv[1]).touch()
            while True:
                time.sleep(0.01)

        distributed.job_key = waiting
        from emseg_tutorial.cli import main
        sys.exit(main(sys.argv[2:]))
""")


def test_ctrl_c_at_a_terminal_during_cluster_prediction_is_one_line(image_and_model, tmp_path):
    """Ctrl-C reaches the whole process group, local dask workers included: only the client reports it."""
    pytest.importorskip("distributed")
    image, model = image_and_model
    driver, ready = tmp_path / "driver.py", tmp_path / "ready"
    driver.write_text(_CLUSTER_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, driver, ready, "predict", "--model", model, "--image", image, "--out",
                             tmp_path / "p.zarr", "--cluster", "local:1", "--quiet"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for _ in range(12000):
            if ready.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.01)
        assert ready.exists(), proc.communicate()[1]
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted (SIGINT); nothing was written (files already there are "
                                        "unchanged)"], err
    assert _leftovers(tmp_path) == []
