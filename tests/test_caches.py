"""Caches that cannot outlive the code: stages, adaptation runs and twins are keyed by a hash of
the package source (emseg_tutorial._source), and every reuse says what was reused and from where."""

import dataclasses

import numpy as np
import pytest

from emseg_tutorial import _source
from emseg_tutorial.data import sources
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.data.volume import Volume
from emseg_tutorial.paper import stages
from emseg_tutorial.presets import get_preset
from emseg_tutorial.session import from_env

REAL_HASH = _source.source_hash


def _edited(module):
    """A ``source_hash`` as if ``module`` (a dotted name) had been edited since the run."""
    def fake(modules=None):
        real = REAL_HASH(modules)
        touched = modules is None or module == modules or module.startswith(modules + ".")
        return "eeeeee" + real[6:] if touched else real
    return fake


# --------------------------------------------------------------------------- the hash


def test_source_hash_covers_a_module_or_a_package_by_prefix(monkeypatch):
    fake = {"emseg_tutorial.data.synthetic": "1", "emseg_tutorial.data.synthetic_notes": "2",
            "emseg_tutorial.losses": "3"}
    monkeypatch.setattr(_source, "_digests", lambda: dict(fake))
    source_hash = _source.source_hash.__wrapped__          # past the per-process cache
    twins, everything = source_hash("emseg_tutorial.data.synthetic"), source_hash()
    assert _source.source_files("emseg_tutorial.data.synthetic") == ["emseg_tutorial.data.synthetic"]
    fake["emseg_tutorial.losses"] = "edited"               # losses.py edited: the twins keep their hash
    assert source_hash("emseg_tutorial.data.synthetic") == twins and source_hash() != everything
    del fake["emseg_tutorial.data.synthetic"]              # synthetic.py became a package
    fake.update({"emseg_tutorial.data.synthetic": "1", "emseg_tutorial.data.synthetic.render": "4"})
    assert _source.source_files("emseg_tutorial.data.synthetic") == ["emseg_tutorial.data.synthetic",
                                                                     "emseg_tutorial.data.synthetic.render"]
    assert source_hash("emseg_tutorial.data.synthetic") != twins
    with pytest.raises(ValueError, match="modules: 'emseg_tutorial.nothing' names no module"):
        source_hash("emseg_tutorial.nothing")


def test_source_hash_reads_the_package_once():
    assert _source.source_hash() == _source.source_hash()
    assert "emseg_tutorial.losses" in _source.source_files()
    assert set(_source.source_files(sources.TWIN_MODULES)) < set(_source.source_files())


# --------------------------------------------------------------------------- twins


class _Settings:
    def __init__(self, runs, progress=True):
        self.preset, self.data, self.runs, self.progress = get_preset("ci"), "synthetic", runs, progress
        self.cache = self.fibsem_image = self.fibsem_labels = None


@pytest.fixture
def makes(monkeypatch):
    calls = []
    real = sources.make_volume

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sources, "make_volume", counting)
    return calls


def test_a_reused_twin_says_so_and_edited_twin_code_redraws_it(tmp_path, makes, capsys, monkeypatch):
    settings = _Settings(tmp_path)
    sources.load_domain("snemi", settings, "test")
    assert len(makes) == 1 and "reused" not in capsys.readouterr().out
    sources.load_domain("snemi", settings, "test")
    path = sources.twin_cache_path(tmp_path, "snemi", settings.preset.target_shape, settings.preset.seed + 1)
    z, y, x = settings.preset.target_shape
    assert capsys.readouterr().out == f"reused twin snemi {z}x{y}x{x} (seed {settings.preset.seed + 1}) from {path}\n"
    assert len(makes) == 1

    monkeypatch.setattr(_source, "source_hash", _edited("emseg_tutorial.losses"))   # losses.py edited
    sources.load_domain("snemi", settings, "test")
    assert len(makes) == 1                                   # the twins' own code is unchanged: reused
    capsys.readouterr()
    monkeypatch.setattr(_source, "source_hash", _edited(sources.TWIN_MODULES))      # synthetic edited
    sources.load_domain("snemi", settings, "test")
    assert len(makes) == 2 and capsys.readouterr().out == ""                       # drawn again
    assert str(np.load(path)["source"]) == sources.twin_source()   # the file now holds the new hash
    sources.load_domain("snemi", settings, "test")
    assert len(makes) == 2


def test_a_session_without_progress_reuses_quietly(tmp_path, makes, capsys):
    settings = _Settings(tmp_path, progress=False)
    sources.load_domain("fibsem", settings, "test")
    sources.load_domain("fibsem", settings, "test")
    assert len(makes) == 1 and capsys.readouterr().out == ""


# --------------------------------------------------------------------------- stages


@pytest.fixture
def stage_env(tmp_path, monkeypatch):
    preset = dataclasses.replace(get_preset("ci"), model={"depth": 2, "base_width": 4}, patch=32, batch_size=2,
                                 steps_per_iteration=0.025, val_every=100)
    session = from_env(preset=preset, device="cpu").replace(runs=tmp_path, progress=True)
    vol = make_volume("fibsem", (4, 48, 48), seed=0)
    source = Volume(vol.image, vol.labels, vol.voxel_size, name=vol.name)
    calls = []
    real = stages.train_supervised

    def counting(image, labels, config, **kwargs):
        calls.append(config.task)
        return real(image, labels, config, **{**kwargs, "progress": False})

    monkeypatch.setattr(stages, "train_supervised", counting)
    return session, source, calls, tmp_path


def test_a_reused_stage_says_what_and_from_where(stage_env, capsys):
    session, source, calls, runs = stage_env
    stages.get_stage("m1", session, source=source)
    assert calls == ["multiclass"] and "reused" not in capsys.readouterr().out
    stages.get_stage("m1", session, source=source)
    assert calls == ["multiclass"]
    assert capsys.readouterr().out == f"reused m1 (seed 0) from {runs / session.preset.name / 'm1-seed0.pt'}\n"


def test_edited_source_retrains_the_stage(stage_env, monkeypatch, capsys):
    session, source, calls, _ = stage_env
    first = stages.get_stage("m1", session, source=source)
    monkeypatch.setattr(_source, "source_hash", _edited("emseg_tutorial.losses"))  # losses.py edited
    again = stages.get_stage("m1", session, source=source)
    assert calls == ["multiclass", "multiclass"]
    assert again.history["fingerprint"]["source"] != first.history["fingerprint"]["source"]
    assert "reused" not in capsys.readouterr().out
    stages.get_stage("m1", session, source=source)                     # the retrained run is reused
    assert calls == ["multiclass", "multiclass"] and "reused m1 (seed 0)" in capsys.readouterr().out
