"""Reproducible to the printed digit (issue 25, item 6): seeds, deterministic CPU kernels and a
fixed CPU thread count, from setup() and the command line's session alike."""

from argparse import Namespace

import pytest
import torch

from emseg_tutorial import cli
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.devices import DEFAULT_THREADS, make_reproducible
from emseg_tutorial.paper.stages import train_config
from emseg_tutorial.presets import get_preset
from emseg_tutorial.session import from_env, setup
from emseg_tutorial.train import train_supervised


@pytest.fixture(autouse=True)
def torch_state():
    """Every test here changes torch's process-wide settings: put them back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def test_make_reproducible_fixes_threads_and_kernels():
    assert make_reproducible(0, threads=1) == torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    a = torch.rand(3)
    make_reproducible(0, threads=1)
    assert torch.equal(torch.rand(3), a)  # seeded
    assert make_reproducible(0, threads=0) == 1  # 0: the count as it is
    make_reproducible(0, threads=1, device="cuda")  # kernels are free to be fast off the CPU
    assert not torch.are_deterministic_algorithms_enabled()
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 0"):
            make_reproducible(0, threads=bad)


def test_the_session_reads_emseg_threads(monkeypatch):
    monkeypatch.delenv("EMSEG_THREADS", raising=False)
    assert from_env(preset="ci", device="cpu").threads == DEFAULT_THREADS == 2
    monkeypatch.setenv("EMSEG_THREADS", "0")
    assert from_env(preset="ci", device="cpu").threads == 0
    assert "threads: all" in from_env(preset="ci", device="cpu").describe()
    for bad in ("-1", "two", "1.5"):
        monkeypatch.setenv("EMSEG_THREADS", bad)
        with pytest.raises(ValueError, match=f"CPU threads must be an integer >= 0.*EMSEG_THREADS='{bad}'"):
            from_env(preset="ci", device="cpu")


def test_setup_and_the_command_line_fix_the_threads(monkeypatch):
    monkeypatch.setenv("EMSEG_THREADS", "1")
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False)
    setup(seed=0, preset="ci", device="cpu", verbose=False)
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    monkeypatch.delenv("EMSEG_THREADS")
    torch.use_deterministic_algorithms(False)
    session = cli._session(Namespace(seed=3, preset="ci", device="cpu"))
    assert session.threads == torch.get_num_threads() == DEFAULT_THREADS
    assert torch.are_deterministic_algorithms_enabled()


def _run(threads: int):
    """A few ci-sized training steps after the session's reproducibility set-up."""
    make_reproducible(0, threads=threads)
    vol = make_volume("fibsem", (6, 96, 96), seed=0)
    config = train_config(get_preset("ci"), task="multiclass", weights="entropy", steps=3, batch_size=2,
                          patch=64, val_every=3, device="cpu")
    run = train_supervised(vol.image, vol.labels, config, progress=False)
    printed = [f"{v:.3f}" for v in run.history["train"]["loss"]] + [
        f"{run.history['val'][-1][k]:.3f}" for k in ("mean_jaccard", "boundary_jaccard")]
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}, printed


def test_the_same_seed_and_threads_give_the_same_weights_and_printed_metrics():
    weights, printed = _run(threads=2)
    again, printed_again = _run(threads=2)
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
    assert printed == printed_again
    # Another thread count splits the kernels' sums otherwise: on the development machine (x86-64,
    # torch 2.x) 1, 2 and 3 threads gave three different sets of weights after these 3 steps
    # (last bits of the loss only); after hundreds of steps the printed digits can move too.
    # That is why the count is fixed; the test does not assert it, as it depends on the CPU.
