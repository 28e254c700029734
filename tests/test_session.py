"""The session is the one reader of EMSEG_* and what it says is what loads and trains."""

import ast
from pathlib import Path

import pytest
import torch

import emseg_tutorial
from emseg_tutorial.data import load_domain, sources
from emseg_tutorial.paper import comparison, seeds, stages
from emseg_tutorial.presets import get_preset
from emseg_tutorial.session import from_env, setup

PACKAGE = Path(emseg_tutorial.__file__).parent


def test_setup_data_governs_what_loads(monkeypatch):
    monkeypatch.setenv("EMSEG_DATA", "synthetic")
    calls = []
    monkeypatch.setattr(sources, "load_real_domain", lambda domain, *a, **k: calls.append(domain) or "real volume")
    session = setup(preset="ci", data="real", device="cpu", verbose=False)
    assert load_domain("fibsem", session) == "real volume" and calls == ["fibsem"]
    assert "**real data**" in sources.describe_source(session)
    twins = setup(preset="ci", data="synthetic", device="cpu", verbose=False)
    assert load_domain("fibsem", twins).shape == twins.preset.source_shape and calls == ["fibsem"]


def test_setup_device_governs_where_stages_train(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)     # a GPU "is there"...
    session = setup(preset="ci", device="cpu", verbose=False)         # ...but the user asked for the CPU
    assert stages.stage_config("m1", session).device == "cpu"
    assert stages.adapt_config(session).device == "cpu"


def test_setup_preset_governs_sizes():
    session = setup(preset="ci", device="cpu", verbose=False)
    assert stages.stage_config("m1", session).patch == session.preset.patch
    assert load_domain("snemi", session, "test").shape == session.preset.target_shape


def test_environment_fills_what_arguments_leave_open(monkeypatch, tmp_path):
    monkeypatch.setenv("EMSEG_DEVICE", "cpu")
    monkeypatch.setenv("EMSEG_RUNS", str(tmp_path))
    monkeypatch.setenv("EMSEG_PROGRESS", "0")
    monkeypatch.setenv("EMSEG_WIDGETS", "static")
    s = from_env(preset="ci")
    assert (s.device.type, s.runs, s.progress) == ("cpu", tmp_path, False)
    from emseg_tutorial.session import widgets_static

    assert widgets_static()
    monkeypatch.setenv("EMSEG_DEVICE", "bogus")
    with pytest.raises(ValueError, match="EMSEG_DEVICE.*bogus|bogus.*EMSEG_DEVICE"):
        from_env(preset="ci")
    with pytest.raises(ValueError, match="argument"):
        from_env(preset="ci", device="nonsense")


def _env_reads(tree: ast.AST) -> list[int]:
    """Lines that read os.environ / os.getenv with an EMSEG_ name (or any name through a constant)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            lines.append(node.lineno)
    return lines


def test_only_the_session_reads_the_environment():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name == "session.py" or "EMSEG_" not in text:
            continue
        # doctests may set variables for their own example; code may not read them
        code = ast.parse(text)
        for node in ast.walk(code):
            if isinstance(node, (ast.FunctionDef, ast.Module)) and ast.get_docstring(node):
                node.body = node.body[1:]
        reads = _env_reads(code)
        if reads:
            offenders[str(path.relative_to(PACKAGE))] = reads
    assert not offenders, f"EMSEG_* read outside session.py: {offenders}"


def test_emseg_compile_switches_torch_compile_on(monkeypatch):
    monkeypatch.delenv("EMSEG_COMPILE", raising=False)
    assert from_env(preset="ci", device="cpu").compile is False
    monkeypatch.setenv("EMSEG_COMPILE", "1")
    assert from_env(preset="ci", device="cpu").compile is True
    monkeypatch.setenv("EMSEG_COMPILE", "0")
    assert from_env(preset="ci", device="cpu").compile is False


def test_emseg_precision_reaches_training_and_adaptation(monkeypatch):
    monkeypatch.delenv("EMSEG_PRECISION", raising=False)
    session = from_env(preset="ci", device="cpu")
    assert session.precision == "auto" and stages.stage_config("m1", session).precision == "auto"
    monkeypatch.setenv("EMSEG_PRECISION", "Float32")
    session = from_env(preset="ci", device="cpu")
    assert session.precision == "float32"
    assert stages.stage_config("m2", session).precision == "float32"
    assert stages.adapt_config(session, "paper").precision == "float32"
    assert "precision: float32" in session.describe()
    monkeypatch.setenv("EMSEG_PRECISION", "half")
    with pytest.raises(ValueError, match="EMSEG_PRECISION='half'"):
        from_env(preset="ci", device="cpu")
    monkeypatch.setenv("EMSEG_PRECISION", "float16")  # needs CUDA: refused at once, not mid-training
    with pytest.raises(ValueError, match="float16.*needs CUDA.*EMSEG_PRECISION"):
        from_env(preset="ci", device="cpu")


# A chapter's session, not a global one: every paper function that trains, loads or sizes a run
# takes the session as an argument and refuses to run without one.
PAPER_CALLS = {
    "stage_config": lambda s: stages.stage_config("m1", s),
    "get_stage": lambda s: stages.get_stage("m1", s),
    "adapt_config": lambda s: stages.adapt_config(s, "paper"),
    "run_adaptation": lambda s: stages.run_adaptation(s, "paper"),
    "compare": lambda s: comparison.compare(["adabn"], s),
    "seed_scores": lambda s: seeds.seed_scores(["m2"], s),
}


@pytest.fixture
def nothing_loads(monkeypatch):
    """Any volume load or training fails the test: a refusal must come before any work."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started without a session")

    for module in (stages, comparison, seeds):
        monkeypatch.setattr(module, "load_domain", forbidden)
    monkeypatch.setattr(stages, "train_supervised", forbidden)


@pytest.mark.parametrize("call", PAPER_CALLS)
@pytest.mark.parametrize("stand_in", [None, "preset"])
def test_paper_functions_refuse_to_run_without_a_session(call, stand_in, nothing_loads):
    setup(preset="ci", device="cpu", verbose=False)   # a session made earlier is no stand-in either
    value = get_preset("ci") if stand_in == "preset" else None
    with pytest.raises(TypeError, match="expected a Session"):
        PAPER_CALLS[call](value)


def test_paper_functions_have_no_default_session():
    import inspect

    from emseg_tutorial import session as session_module

    assert not hasattr(session_module, "current")   # no global session below the chapters
    for module in (stages, comparison, seeds):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__:
                continue
            params = inspect.signature(fn).parameters
            if "session" in params:
                assert params["session"].default is inspect.Parameter.empty, f"{module.__name__}.{name}"
            if name in ("score", "pixel_scores"):   # the device is the caller's (session.device)
                assert params["device"].default is inspect.Parameter.empty, name
    with pytest.raises(TypeError, match="session"):   # left out: Python's own TypeError
        stages.get_stage("m1")
    with pytest.raises(TypeError, match="session"):
        comparison.compare(["adabn"])
