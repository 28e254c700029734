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
    size = preset.comparison
    assert size.seeds >= 2 and 1 <= size.eval_stride < preset.target_shape[0]
    assert size.report_stride < preset.target_shape[0]
    assert 1 <= preset.weighting.eval_stride < preset.source_shape[0]
    for method in method_names(trains=True):  # the trained ones (adabn and histmatch take no config)
        adapt_config(session, method, 0)
        adapt_config(session, method, 0, **size.adapt_settings())
    assert adapt_config(session).epochs == preset.adapt_epochs >= 2


# ----------------------------------------------------------------------------- one source of sizes
#: TrainConfig / AdaptConfig field -> the Preset field that sizes it
TRAIN_SIZES = {"batch_size": "batch_size", "patch": "patch", "lr": "lr", "val_every": "val_every", "model": "model"}
ADAPT_SIZES = {"epochs": "adapt_epochs", "steps_per_epoch": "adapt_steps_per_epoch", "batch_size": "batch_size",
               "patch": "patch", "report_stride": "adapt_report_stride", "discriminator": "discriminator"}


def _probe(name):
    """Preset ``name`` with every size changed to a value no code could hold as its own default."""
    import dataclasses

    return dataclasses.replace(
        presets.get_preset(name), patch=48, batch_size=3, lr=3.3e-3, val_every=7, steps_per_iteration=0.7,
        model={"depth": 2, "base_width": 6, "norm": "batch"}, adapt_epochs=5, adapt_steps_per_epoch=6,
        adapt_report_stride=3, discriminator={"width": 5, "depth": 2, "norm": None},
        comparison=presets.ComparisonSize(seeds=2, epochs=3, steps_per_epoch=4, batch_size=5, lr_g=2.2e-3,
                                          report_stride=2, eval_stride=3),
        weighting=presets.WeightingSize(seeds=4, eval_stride=3))


def test_configs_have_no_sizes_of_their_own():
    """A size written as a config default would be a second source that can disagree with a preset."""
    from dataclasses import MISSING, fields

    from emseg_tutorial.adapt import AdaptConfig
    from emseg_tutorial.train import TrainConfig

    for cls, sizes in ((TrainConfig, {"task", "weights", "steps", *TRAIN_SIZES}), (AdaptConfig, set(ADAPT_SIZES))):
        own = {f.name for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}
        assert not own & sizes, f"{cls.__name__} has its own defaults for {sorted(own & sizes)}"
    with pytest.raises(TypeError, match="missing"):
        TrainConfig(task="boundary", weights="distance")
    with pytest.raises(TypeError, match="missing"):
        AdaptConfig(method="paper")


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
@pytest.mark.parametrize("probe", [False, True], ids=["as-is", "probe"])
def test_every_size_of_every_config_comes_from_the_preset(name, probe):
    """Each stage's and each method's config, at every preset (and at one with every size changed),
    has exactly the preset's sizes; chapter 6's configs have the comparison's."""
    from emseg_tutorial.adapt import method_names
    from emseg_tutorial.paper.stages import STAGES, adapt_config, budget_steps, stage_config

    session = from_env(preset=_probe(name) if probe else name, device="cpu")
    preset = session.preset
    for stage, spec in STAGES.items():
        config = stage_config(stage, session)
        assert {k: getattr(config, k) for k in TRAIN_SIZES} == {k: getattr(preset, v) for k, v in TRAIN_SIZES.items()}
        assert config.steps == budget_steps(preset, spec.budget), stage
    chapter6 = preset.comparison.adapt_settings()
    for method in method_names(trains=True):
        config = adapt_config(session, method)
        assert {k: getattr(config, k) for k in ADAPT_SIZES} == {k: getattr(preset, v) for k, v in ADAPT_SIZES.items()}
        compared = adapt_config(session, method, 1, **chapter6)
        assert {k: getattr(compared, k) for k in chapter6} == chapter6
        assert (compared.patch, compared.discriminator) == (preset.patch, preset.discriminator)


def test_chapter4_and_chapter6_runs_take_the_presets_sizes(monkeypatch, tmp_path):
    """seed_scores and compare read WeightingSize and ComparisonSize, nothing else (no training here)."""
    from types import SimpleNamespace

    import numpy as np

    from emseg_tutorial.adapt import get_method, method_names
    from emseg_tutorial.data.volume import Volume
    from emseg_tutorial.paper import comparison, seeds

    preset = _probe("ci")
    session = from_env(preset=preset, device="cpu").replace(runs=tmp_path, progress=False)
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((9, 16, 16)).astype(np.float32), rng.integers(1, 3, (9, 16, 16)).astype(np.uint8),
                 name="probe")
    m3 = SimpleNamespace(model=None, history={"fingerprint": "m3"})
    # chapter 4: seeds and stride from preset.weighting
    seen = []
    monkeypatch.setattr(seeds, "get_stage", lambda name, s, seed, init_seed: m3)
    monkeypatch.setattr(seeds, "score_slices", lambda model, volume, task, *, device, stride: seen.append(stride) or {})
    long = seeds.seed_scores(["m2"], session, volume=vol)
    assert long.attrs["seeds"] == list(range(preset.weighting.seeds))
    assert seen == [preset.weighting.eval_stride] * preset.weighting.seeds
    # chapter 6: every trained run sized by preset.comparison, the target scored every eval_stride-th slice
    runs = []
    monkeypatch.setattr(comparison, "get_stage", lambda name, s: m3)
    monkeypatch.setattr(comparison, "load_domain", lambda *a, **k: vol)
    monkeypatch.setattr(comparison, "epoch_report", lambda *a, **k: {})
    monkeypatch.setattr(comparison, "source_reference", lambda *a, **k: {})
    monkeypatch.setattr(comparison, "boundary_snapshot", lambda *a, **k: None)
    monkeypatch.setattr(comparison, "save_run", lambda *a: None)

    def run_method(name, model, source, target_image, *, config_kwargs, target_eval, **kwargs):
        runs.append((name, config_kwargs, target_eval.shape[0]))
        return SimpleNamespace(snapshots=[], model=None, discriminator=None)

    monkeypatch.setattr(comparison, "run_method", run_method)
    comp = comparison.compare(list(method_names()), session)
    size = preset.comparison
    trained = [(n, kw) for n, kw, _ in runs if get_method(n).trains]
    assert len(trained) == size.seeds * len(method_names(trains=True))
    for name, kwargs in trained:
        assert {k: kwargs[k] for k in size.adapt_settings()} == size.adapt_settings(), name
        assert (kwargs["patch"], kwargs["discriminator"]) == (preset.patch, preset.discriminator)
    assert {n for n, _, _ in runs if not get_method(n).trains} == {n for n in method_names() if get_method(n).deterministic}
    assert {z for _, _, z in runs} == {len(range(0, vol.shape[0], size.eval_stride))}
    assert comp.settings == {"seeds": list(range(size.seeds)), "eval_stride": size.eval_stride,
                             **size.adapt_settings()}


def test_comparison_and_weighting_sizes_are_checked():
    with pytest.raises(ValueError, match="ComparisonSize.seeds"):
        presets.ComparisonSize(seeds=0, epochs=1, steps_per_epoch=1, batch_size=1, lr_g=1e-4, report_stride=1,
                               eval_stride=1)
    with pytest.raises(ValueError, match="WeightingSize.eval_stride"):
        presets.WeightingSize(seeds=3, eval_stride=1.5)
    with pytest.raises(TypeError, match="Preset.comparison must be a ComparisonSize"):
        import dataclasses

        dataclasses.replace(presets.get_preset("ci"), comparison={"seeds": 3})
