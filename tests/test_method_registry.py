"""One record per adaptation method: a method registered from this file (the package untouched)
runs through the library, the command line and chapter 6's comparison; every record's files are
what the command line writes; a flag a method does not read is refused."""

import json

import numpy as np
import pytest
import torch

from emseg_tutorial.adapt import (AdaptConfig, Method, OnePassResult, get_method, method_names, register,
                                  run_method, unregister)
from emseg_tutorial.adapt.loop import OPTIONAL
from emseg_tutorial.adapt.registry import ONE_PASS, TRAINING
from emseg_tutorial.adapt.steps import backward_step
from emseg_tutorial.cli import ADAPT_OPTIONS, main
from emseg_tutorial.data.readers import read_image
from emseg_tutorial.data.volume import Volume
from emseg_tutorial.losses import entropy_map
from emseg_tutorial.paper.stages import method_settings
from emseg_tutorial.store import load_checkpoint

from helpers import CI, ci_config, tiny_unet

TINY = dict(epochs=1, steps_per_epoch=2, batch_size=2, patch=32, report_stride=1, seed=0, device="cpu",
            discriminator={"width": 4, "depth": 2, "norm": None})


def entropy_step(ctx) -> dict:
    """One entropy-minimisation update of the U-Net on a target batch (no source, no discriminator)."""
    _, probs = ctx.probs(ctx.batch(ctx.target)["image"])
    loss = entropy_map(probs).mean()
    ctx.opt_g.zero_grad(set_to_none=True)
    backward_step(loss, ctx.opt_g, ctx.scaler_g)
    return {"loss_entropy": loss.detach()}


def inverted_pass(model, source_image, target_image, target_eval, **run) -> OnePassResult:
    """The model unchanged, the target's contrast inverted (and written as a file)."""
    inverted = (255 - np.asarray(target_image, np.float32)).astype(np.uint8)
    volume = None if target_eval is None else Volume(
        (255 - target_eval.image.astype(np.float32)).astype(np.uint8), target_eval.labels, name="inverted")
    return OnePassResult(model, inverted, volume, {"target_inverted.tif": inverted})


@pytest.fixture
def new_methods():
    """Two methods the package does not know, registered for one test and removed after it."""
    records = [
        register(Method("test-entmin", "entropy minimisation on the target (a test method)",
                        TRAINING - {"source_weight", "source_weights"}, step=entropy_step, source_image=False)),
        register(Method("test-invert", "inverted target contrast (a test method)", ONE_PASS, one_pass=inverted_pass,
                        source_image=False, outputs=("target_inverted.tif",), deterministic=True)),
    ]
    yield records
    for r in records:
        unregister(r.name)
    assert not {"test-entmin", "test-invert"} & set(method_names(ablations=True))




@pytest.fixture
def files(adapt_cli_files):
    return adapt_cli_files


@pytest.fixture
def volumes(adapt_volumes):
    return adapt_volumes


def _adapt_args(p, method, *extra, source_image=None):
    """CLI arguments of an adaptation; ``source_image`` None: given where the method reads it
    (with the default settings, or the ``--source-weight`` in ``extra``)."""
    if source_image is None:
        settings = {"source_weight": float(extra[extra.index("--source-weight") + 1])} \
            if "--source-weight" in extra else method_settings(CI, method)
        source_image = get_method(method).needs_source_image(settings)
    return (["adapt", "--model", f"{p}/m3.pt", "--source-labels", f"{p}/sl.tif", "--target-image", f"{p}/t.tif",
             "--eval-labels", f"{p}/tl.tif", "--method", method, "--out", f"{p}/out", "--quiet"]
            + (["--source-image", f"{p}/s.tif"] if source_image else []) + list(extra))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --------------------------------------------------------------------------- a new method, end to end


def test_a_new_trained_method_runs_through_the_library(new_methods, volumes):
    src, tgt = volumes
    net = tiny_unet()
    # no source image: the record says this method needs none
    run = run_method("test-entmin", net, Volume(None, src.labels), tgt.image, config_kwargs=TINY,
                     target_eval=tgt, progress=False)
    assert [e["epoch"] for e in run.epochs] == [0, 1] and run.discriminator is None
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), run.model.state_dict().values()))
    assert ci_config(method="test-entmin").adv_weight is None  # no default invented for it


def test_a_new_one_pass_method_runs_through_the_library(new_methods, volumes):
    src, tgt = volumes
    run = run_method("test-invert", tiny_unet(), Volume(None, src.labels), tgt.image, config_kwargs={"device": "cpu", "report_stride": 1},
                     target_eval=tgt, progress=False)
    assert [e["epoch"] for e in run.epochs] == [0, 1] and len(run.snapshots) == 2
    np.testing.assert_array_equal(run.volumes["target_inverted.tif"], 255 - tgt.image)
    with pytest.raises(ValueError, match="runs in one pass"):
        run_method("test-invert", tiny_unet(), src, tgt.image, config_kwargs={}, resume={"epoch": 1}, progress=False)


@pytest.mark.parametrize("name", ["test-entmin", "test-invert"])
def test_a_new_method_runs_through_the_cli(new_methods, files, name, capsys):
    record = get_method(name)
    extra = ["--epochs", "1", "--steps", "2"] if record.trains else []
    assert main(_adapt_args(files, name, *extra, source_image=False)) == 0, capsys.readouterr().err
    assert sorted(f.name for f in (files / "out").iterdir()) == sorted(record.files)
    _, ckpt = load_checkpoint(files / "out" / "model.pt")
    assert ckpt["config"]["adapt"]["method"] == name
    if not record.trains:
        written, _ = read_image(files / "out" / "target_inverted.tif")
        target, _ = read_image(files / "t.tif")
        np.testing.assert_array_equal(written, 255 - target)


def test_a_new_method_refuses_flags_it_does_not_read(new_methods, files, capsys):
    assert main(_adapt_args(files, "test-entmin", "--adv-weight", "0.1")) == 2
    line = _one_line_error(capsys)
    assert "--adv-weight" in line and "test-entmin" in line
    assert main(_adapt_args(files, "test-invert", "--epochs", "2")) == 2
    line = _one_line_error(capsys)
    assert "--epochs" in line and "test-invert" in line
    assert not (files / "out").exists()


def test_a_new_method_runs_through_compare(new_methods, tmp_path):
    from emseg_tutorial.paper.comparison import compare, comparison_table, findings
    from emseg_tutorial.session import from_env

    session = from_env(preset="ci", device="cpu").replace(runs=tmp_path, progress=False)
    comp = compare(["test-entmin", "test-invert"], session)
    seeds = comp.settings["seeds"]
    assert [(r.name, r.seed) for r in comp.runs] == [("test-entmin", s) for s in seeds] + [("test-invert", None)]
    assert {"test-entmin", "test-invert"} <= set(comparison_table(comp).index)
    assert "`test-invert`: last epoch" in findings(comp) and "deterministic, one run" in findings(comp)
    assert compare(["test-entmin", "test-invert"], session).reused == len(comp.runs)


# --------------------------------------------------------------------------- every registered record


@pytest.mark.parametrize("name", method_names(ablations=True))
def test_every_record_reads_only_config_options(name):
    from dataclasses import fields

    record = get_method(name)
    assert record.options <= {f.name for f in fields(AdaptConfig)} - {"method"}
    assert set(record.defaults) <= record.options and set(record.overrides) <= record.options
    if record.trains and not record.variant_of:
        config = ci_config(method=name)
        assert all(getattr(config, k) is not None for k in record.options - set(OPTIONAL))


@pytest.mark.parametrize("name", method_names())
def test_every_record_files_are_what_the_cli_writes(name, files, capsys):
    record = get_method(name)
    extra = ["--epochs", "1", "--steps", "1"] if record.trains else []
    assert main(_adapt_args(files, name, *extra)) == 0, capsys.readouterr().err
    assert sorted(f.name for f in (files / "out").iterdir()) == sorted(record.files)
    printed = capsys.readouterr().out
    assert all(f in printed for f in record.files)


@pytest.mark.parametrize("name", method_names())
def test_every_flag_a_method_ignores_is_refused(name, files, capsys):
    record = get_method(name)
    values = {"--preset": "ci", "--epochs": "1", "--steps": "1", "--lr-g": "1e-4", "--adv-weight": "0.5", "--source-weight": "1",
              "--condition-image": "raw", "--seed": "3", "--precision": "float32", "--device": "cpu",
              "--keep": "last", "--patience": "2"}
    assert set(values) == set(ADAPT_OPTIONS)
    ignored = [flag for flag, (_, options) in ADAPT_OPTIONS.items() if not set(options) & record.options]
    for flag in ignored:
        assert main(_adapt_args(files, name, flag, values[flag])) == 2, flag
        line = _one_line_error(capsys)
        assert flag in line and f"method {name}" in line
    assert not (files / "out").exists()


def test_the_refusals_the_issue_names():
    for name, flags in {"adabn": ["--epochs", "--steps", "--lr-g", "--seed", "--precision", "--preset", "--keep",
                                  "--patience"],
                        "histmatch": ["--epochs", "--steps", "--lr-g", "--seed", "--precision", "--preset", "--keep",
                                      "--patience"],
                        "paper": ["--condition-image"], "selftrain": ["--adv-weight"]}.items():
        options = get_method(name).options
        assert all(not set(ADAPT_OPTIONS[f][1]) & options for f in flags), name


# --------------------------------------------------------------------------- the CLI maps arguments, no more


def test_cli_without_source_image_passes_none_and_the_library_check_speaks(files, capsys, monkeypatch):
    from emseg_tutorial import cli

    seen = {}
    real = cli.run_method

    def spy(name, model, source, *args, **kwargs):
        seen["image"] = source.image
        return real(name, model, source, *args, **kwargs)

    monkeypatch.setattr(cli, "run_method", spy)
    assert main(_adapt_args(files, "adaptsegnet", "--epochs", "1", "--steps", "1", source_image=False)) == 2
    line = _one_line_error(capsys)
    assert seen["image"] is None  # no placeholder volume
    assert line == ("error: method 'adaptsegnet' needs the source image (source_image / --source-image), "
                    "not only its labels")
    assert main(_adapt_args(files, "paper", "--epochs", "1", "--steps", "1", source_image=False)) == 0
    assert seen["image"] is None
    assert main(_adapt_args(files, "paper", "--epochs", "1", "--steps", "1", "--source-weight", "1",
                            source_image=False) + ["--out", f"{files}/out2"]) == 2
    assert "needs the source image" in _one_line_error(capsys)


@pytest.mark.parametrize("env, flag, expected", [("float32", None, "float32"), ("float32", "bfloat16", "bfloat16"),
                                                 (None, None, "auto")])
def test_cli_precision_defaults_to_the_session(files, monkeypatch, capsys, env, flag, expected):
    if env:
        monkeypatch.setenv("EMSEG_PRECISION", env)
    else:
        monkeypatch.delenv("EMSEG_PRECISION", raising=False)
    extra = ["--precision", flag] if flag else []
    assert main(_adapt_args(files, "paper", "--epochs", "1", "--steps", "1", *extra)) == 0, capsys.readouterr().err
    history = json.loads((files / "out" / "history.json").read_text())
    assert history["config"]["precision"] == expected and history["config"]["seed"] == 0


def test_histmatch_runs_once(files, monkeypatch, capsys):
    from emseg_tutorial.adapt import registry

    calls = []
    real = registry.match_to_source
    monkeypatch.setattr(registry, "match_to_source", lambda *a: calls.append(1) or real(*a))
    assert main(_adapt_args(files, "histmatch")) == 0, capsys.readouterr().err
    assert len(calls) == 1  # the labelled target is the target image itself: matched once, written
    written, _ = read_image(files / "out" / "target_matched.tif")
    target, _ = read_image(files / "t.tif")
    source, _ = read_image(files / "s.tif")
    np.testing.assert_array_equal(written, real(target, source))


def test_resume_of_a_one_pass_method_is_refused_from_the_record(files, capsys):
    args = _adapt_args(files, "adabn")
    at = args.index("--out")
    assert main(args[:at] + args[at + 2:] + ["--resume", f"{files}/out"]) == 2
    assert "nothing to resume" in _one_line_error(capsys)


# --------------------------------------------------------------------------- the source labels, checked once


@pytest.mark.parametrize("name", ["paper", "conditional", "adaptsegnet", "selftrain", "adabn"])
def test_source_labels_are_checked_once_from_run_method(name, volumes, monkeypatch):
    """Followed from run_method into the adversarial step (or the one-pass method), the source
    labels go through check_codes once, where they enter."""
    from emseg_tutorial import labels as labels_module, weight_schemes, weights

    src, tgt = volumes
    calls = []
    real = labels_module.check_codes

    def counting(array, *args, **kwargs):
        if np.shape(array)[-2:] == src.labels.shape[-2:]:  # the source's, not the target's (48 x 48)
            calls.append(np.shape(array))
        return real(array, *args, **kwargs)

    for module in (labels_module, weight_schemes, weights):
        monkeypatch.setattr(module, "check_codes", counting)
    run_method(name, tiny_unet(), Volume(src.image, src.labels), tgt.image, config_kwargs={**TINY, "patch": 32},
               progress=False)
    assert calls == [src.labels.shape]


def test_cli_precision_the_device_cannot_run_is_refused_naming_the_flag(files, capsys):
    assert main(_adapt_args(files, "paper", "--precision", "float16")) == 2
    line = _one_line_error(capsys)
    assert line.startswith("error: --precision float16:") and "needs CUDA" in line
    assert not (files / "out").exists()


def test_source_labels_make_at_most_ten_stays_from_run_method_to_the_adversarial_step(volumes, monkeypatch):
    """The source label volume (and its boundary codes, made once) passes through at most ten
    functions of the package between run_method and the paper's adversarial step, in at most six
    modules: it is checked and converted where it enters, then handed down, never climbing back."""
    import sys

    from emseg_tutorial.adapt import loop

    src, tgt = volumes
    tracked = [src.labels]
    real = loop.source_codes

    def keeping(*args, **kwargs):
        out = real(*args, **kwargs)
        tracked.append(out)
        return out

    monkeypatch.setattr(loop, "source_codes", keeping)
    stays = []

    def profile(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if event == "call" and module.startswith("emseg_tutorial") and any(
                any(value is t for t in tracked) for value in frame.f_locals.values()):
            stays.append((module, frame.f_code.co_qualname))

    source, model = Volume(src.image, src.labels), tiny_unet()
    sys.setprofile(profile)
    try:
        run_method("paper", model, source, tgt.image, config_kwargs=TINY, progress=False)
    finally:
        sys.setprofile(None)
    functions = list(dict.fromkeys(stays))
    assert ("emseg_tutorial.adapt.loop", "source_codes") in functions  # the tracking sees the labels
    assert len(functions) <= 10, functions
    assert len({m for m, _ in functions}) <= 6, functions


def test_cli_refuses_a_source_image_the_method_does_not_read(files, capsys):
    for method, extra in (("paper", ["--epochs", "1", "--steps", "1"]), ("adabn", [])):
        assert main(_adapt_args(files, method, *extra, source_image=True)) == 2
        assert _one_line_error(capsys).startswith(f"error: --source-image: method {method} does not read")
        assert not (files / "out").exists()


def test_histmatch_matches_a_part_of_a_volume_as_the_whole(volumes):
    """Every n-th slice of a labelled target is matched as its whole volume, then taken: the
    scored slices do not change with the stride (and get the whole matched volume's normaliser)."""
    from emseg_tutorial.data.histmatch import match_to_source

    src, tgt = volumes
    whole = Volume(tgt.image, tgt.labels, name="t")
    part = whole.take(slice(None, None, 2))
    out = get_method("histmatch").one_pass(tiny_unet(), src.image, tgt.image, part, settings={}, normalizer=None,
                                           device=torch.device("cpu"), progress=False)
    matched = match_to_source(tgt.image, src.image)
    np.testing.assert_array_equal(out.target_eval.image, matched[::2])
    assert out.target_eval.normalizer == Volume(matched).normalizer
    np.testing.assert_array_equal(out.target_eval.labels, tgt.labels[::2])


def test_adabn_estimates_with_the_target_normaliser_it_is_given(volumes, monkeypatch):
    from emseg_tutorial.adapt import registry
    from emseg_tutorial.data.normalize import Normalizer

    src, tgt = volumes
    seen = {}
    real = registry.adapt_batchnorm

    def spy(model, image, **kwargs):
        seen.update(kwargs)
        return real(model, image, **kwargs)

    monkeypatch.setattr(registry, "adapt_batchnorm", spy)
    norm = Normalizer.from_volume(tgt.image)
    run_method("adabn", tiny_unet(), Volume(None, src.labels), tgt.image, config_kwargs={"report_stride": 1, "device": "cpu"},
               progress=False, target_normalizer=norm)
    assert seen["normalizer"] is norm


@pytest.mark.parametrize("name", ["paper", "adabn"])
def test_the_library_refuses_a_model_that_is_not_a_boundary_model(name, volumes):
    from emseg_tutorial.models import UNet2d

    src, tgt = volumes
    m1 = UNet2d(out_channels=4, depth=2, base_width=4)
    with pytest.raises(ValueError, match=r"adaptation needs a two-class model \(2 classes: the boundary, or one class against the rest\), this one has 4"):
        run_method(name, m1, Volume(src.image, src.labels), tgt.image, config_kwargs=TINY, progress=False)


def test_a_one_pass_run_without_report_stride_is_refused_in_one_line(volumes):
    src, tgt = volumes
    with pytest.raises(ValueError, match="config_kwargs needs report_stride"):
        run_method("adabn", tiny_unet(), Volume(None, src.labels), tgt.image, config_kwargs={"device": "cpu"},
                   progress=False)
