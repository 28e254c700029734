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


def test_lab_preset_sits_between_ci_and_cpu(monkeypatch):
    """``lab`` (a timed class): chosen by name only, smaller than cpu, larger than ci, same U-Net as cpu."""
    from emseg_tutorial.paper.stages import PAPER_ITERATIONS, budget_steps

    monkeypatch.setenv("EMSEG_PRESET", "lab")
    assert from_env().preset.name == "lab"
    assert presets.default_preset_name() in ("cpu", "gpu")  # never a default
    ci, lab, cpu = (presets.PRESETS[n] for n in ("ci", "lab", "cpu"))
    size = lambda s: s[0] * s[1] * s[2]  # noqa: E731
    for shape in ("source_shape", "target_shape"):
        assert size(getattr(ci, shape)) < size(getattr(lab, shape)) < size(getattr(cpu, shape))
    assert lab.model == cpu.model
    pixels = lambda p, steps: steps * p.batch_size * p.patch ** 2  # noqa: E731 - training cost ~ pixels seen
    for budget in PAPER_ITERATIONS:
        assert (pixels(ci, budget_steps(ci, budget)) < pixels(lab, budget_steps(lab, budget))
                < pixels(cpu, budget_steps(cpu, budget)))
    assert ([budget_steps(lab, b) for b in ("exp1", "exp2", "exp2_scratch", "jitter")] == [240, 40, 180, 20])


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_sizes_every_stage_adaptation_and_comparison(name):
    """Configs build for every stage, adaptation and comparison, and the sizes fit together."""
    from emseg_tutorial.adapt import method_names
    from emseg_tutorial.paper.stages import STAGES, adapt_config, stage_config

    preset = presets.get_preset(name)
    session = from_env(preset=name, device="cpu")
    depth = preset.model["depth"]
    assert preset.patch % 2 ** (depth - 1) == 0, "patches must halve cleanly at every U-Net level"
    assert preset.patch <= min(preset.source_shape[1:] + preset.target_shape[1:])
    for stage in STAGES:
        config = stage_config(stage, session)
        assert config.steps >= 1 and config.patch == preset.patch and config.model == preset.model
    comparison = dict(preset.comparison)
    assert set(comparison) == set(presets.PRESETS["cpu"].comparison)
    seeds, eval_stride = comparison.pop("seeds"), comparison.pop("eval_stride")
    assert seeds >= 2 and 1 <= eval_stride < preset.target_shape[0]
    assert comparison["report_stride"] < preset.target_shape[0]
    for method in method_names(trains=True):  # the trained ones (adabn and histmatch take no config)
        adapt_config(session, method, 0)
        adapt_config(session, method, 0, **comparison)
    assert adapt_config(session).epochs == preset.adapt_epochs >= 2
