"""Presets, the session's settings and the data-source switch."""

import pytest

from emseg_tutorial import presets
from emseg_tutorial.data import DataSourceError, load_domain, load_pair
from emseg_tutorial.session import from_env


def test_env_selects_preset(monkeypatch):
    monkeypatch.setenv("EMSEG_PRESET", "cpu")
    assert from_env().preset.name == "cpu"
    monkeypatch.setenv("EMSEG_PRESET", "GPU")
    assert from_env().preset.name == "gpu"
    assert from_env(preset="ci").preset.name == "ci"               # the argument wins


def test_default_follows_hardware(monkeypatch):
    monkeypatch.delenv("EMSEG_PRESET", raising=False)
    assert from_env().preset.name == presets.default_preset_name() == presets.get_preset().name


def test_unknown_preset_names_the_source(monkeypatch):
    monkeypatch.setenv("EMSEG_PRESET", "fast")
    with pytest.raises(ValueError, match="EMSEG_PRESET"):
        from_env()
    with pytest.raises(ValueError, match="argument"):
        from_env(preset="huge")


def test_presets_grow():
    ci, cpu, gpu = (presets.PRESETS[n] for n in ("ci", "cpu", "gpu"))
    size = lambda s: s[0] * s[1] * s[2]  # noqa: E731
    assert size(ci.source_shape) < size(cpu.source_shape) < size(gpu.source_shape)
    assert gpu.source_shape[1:] == (500, 500)  # the paper's FIBSEM slices


def test_data_source(monkeypatch):
    monkeypatch.delenv("EMSEG_DATA", raising=False)
    assert from_env().data == "synthetic"
    monkeypatch.setenv("EMSEG_DATA", "nonsense")
    with pytest.raises(ValueError, match="EMSEG_DATA"):
        from_env()


def test_splits_differ_and_real_is_reported(monkeypatch, tmp_path):
    monkeypatch.delenv("EMSEG_DATA", raising=False)
    ci = presets.get_preset("ci")
    train, test = load_domain("fibsem", ci, "train"), load_domain("fibsem", ci, "test")
    assert train.shape == test.shape == ci.source_shape
    assert (train.image != test.image).any()
    src, tgt = load_pair(ci)
    assert tgt.shape == ci.target_shape
    # real data offline: one clear error (the network is cut here; tests/test_real.py has more)
    from emseg_tutorial.data import registry

    def offline(url, progress):
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(registry, "_downloader", offline)
    monkeypatch.setenv("EMSEG_CACHE", str(tmp_path))
    with pytest.raises(DataSourceError, match="could not download"):
        load_domain("snemi", from_env(preset="ci", data="real"))
    with pytest.raises(ValueError, match="split"):
        load_domain("snemi", ci, split="val")
