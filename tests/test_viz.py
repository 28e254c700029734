"""The figure package: one module per chapter, public names only across modules, no import cycle."""

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import emseg_tutorial
from emseg_tutorial import viz

PACKAGE = Path(emseg_tutorial.__file__).parent
VIZ = PACKAGE / "viz"
MODULES = sorted(p.stem for p in VIZ.glob("*.py") if p.stem != "__init__")
CHAPTER_MODULES = [m for m in MODULES if m not in ("common", "widgets")]


def parse(name: str) -> ast.Module:
    return ast.parse((VIZ / f"{name}.py").read_text(), filename=f"viz/{name}.py")


def is_package_import(node: ast.ImportFrom | ast.Import) -> bool:
    """An import of emseg_tutorial or one of its modules (relative, or absolute by name)."""
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "emseg_tutorial"
    return any(a.name.split(".")[0] == "emseg_tutorial" for a in node.names)


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_modules_are_the_chapters():
    assert set(MODULES) == {"common", "data", "weights", "training", "adaptation", "comparison", "widgets"}
    assert set(viz.CHAPTER_MODULES) == set(MODULES) - {"widgets"}


@pytest.mark.parametrize("name", [*MODULES, "__init__"])
def test_no_private_imports_across_viz_modules(name):
    """No ``from .x import _name``, no ``x._name`` on an imported module: only public names cross."""
    tree = parse(name)
    modules = set()  # names bound to imported package modules, e.g. `from . import common`
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and is_package_import(node):
            for alias in node.names:
                if private(alias.name.split(".")[-1]):
                    bad.append(f"line {node.lineno}: imports {alias.name}")
                if isinstance(node, ast.Import) or node.module is None:
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                bad.append(f"line {node.lineno}: uses {ast.unparse(node)}")
    assert not bad, f"viz/{name}.py: {bad}"


@pytest.mark.parametrize("name", [*MODULES, "__init__"])
def test_no_function_level_imports_of_the_package(name):
    """Imports of emseg_tutorial modules sit at the top of each module, where cycles show at once."""
    bad = [f"{fn.name}, line {node.lineno}"
           for fn in ast.walk(parse(name)) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
           for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom)) and is_package_import(node)]
    assert not bad, f"viz/{name}.py imports inside {bad}"


@pytest.mark.parametrize("name", MODULES)
def test_every_chapter_module_imports(name):
    module = importlib.import_module(f"emseg_tutorial.viz.{name}")
    assert Path(module.__file__).parent == VIZ  # this checkout's package, not another install
    assert module.__doc__ and "chapter" in module.__doc__.lower()
    for public in module.__all__:
        obj = getattr(module, public)
        if callable(obj):
            assert obj.__module__ == module.__name__, f"{public} is re-exported, not defined, by {name}"
            assert obj.__doc__, f"{name}.{public} has no docstring"


def test_the_package_docstring_lists_every_module_once():
    """The table in viz/__init__ is the module list: a module added, renamed or removed without
    updating it fails here (and the chapter modules are re-exported in book order)."""
    listed = re.findall(r"^:mod:`\.(\w+)`", viz.__doc__, flags=re.M)
    assert sorted(listed) == MODULES and len(listed) == len(set(listed))
    assert list(viz.CHAPTER_MODULES) == [m for m in listed if m != "widgets"]


def test_every_exported_function_is_callable():
    assert len(viz.__all__) == len(set(viz.__all__)), "two chapter modules export the same name"
    for name in viz.__all__:
        obj = getattr(viz, name)
        if name == "widgets":
            assert obj is importlib.import_module("emseg_tutorial.viz.widgets")
        elif name == "LABEL_COLORS":
            assert isinstance(obj, dict)
        else:
            assert callable(obj), name
    exported = {n for m in viz.CHAPTER_MODULES for n in getattr(viz, m).__all__}
    assert exported | {"widgets"} == set(viz.__all__)
    assert {"show_domains", "weight_maps_figure", "training_curves", "adaptation_diagnostics",
            "method_curves", "gray", "overlay"} <= exported


def test_comparison_figures_do_not_import_the_comparison():
    modules = [node.module or "" for node in ast.walk(parse("comparison"))
               if isinstance(node, ast.ImportFrom) and is_package_import(node)]
    assert not [m for m in modules if "comparison" in m], modules


def test_common_and_chapters_do_not_import_the_session():
    """Only the widgets read a setting of the session; the figures take everything as arguments."""
    for name in [*MODULES, "__init__"]:
        tree = parse(name)
        imports_session = any(
            isinstance(node, ast.ImportFrom) and is_package_import(node)
            and ("session" in (node.module or "") or any(a.name == "session" for a in node.names))
            for node in ast.walk(tree))
        assert imports_session == (name == "widgets"), name


@pytest.mark.parametrize("first", ["emseg_tutorial.viz.widgets", "emseg_tutorial.session",
                                   "emseg_tutorial.viz.comparison"])
def test_imports_in_a_fresh_interpreter(first):
    """Whichever module a program imports first, no import cycle breaks it."""
    code = (f"import importlib; importlib.import_module({first!r})\n"
            "from emseg_tutorial import viz, session\n"
            "assert viz.widgets.widgets_static is session.widgets_static\n")
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr


def fake_comparison():
    """What the chapter-6 figures read of a ``Comparison``, and nothing more."""
    labels = np.full((3, 24, 24), 2, np.uint8)
    labels[:, :, 11:13] = 1

    def run(name, seed):
        epochs = [{"epoch": e, "target": {"boundary_jaccard": 0.4 + 0.1 * e}, "d_acc_real": 0.8,
                   "d_acc_fake_mismatch": 0.3, "d_acc_fake_target": 0.9} for e in range(3)]
        return SimpleNamespace(name=name, seed=seed, epochs=epochs, snapshots=[np.random.rand(24, 24)] * 2,
                               last=2, scores=lambda e, epochs=epochs: epochs[e]["target"])

    runs = [run("conditional", 0), run("conditional", 1), run("histmatch", None)]
    return SimpleNamespace(
        target_eval=SimpleNamespace(image=np.zeros((3, 24, 24), np.uint8), labels=labels),
        snapshot_slice=1, source_only_snapshot=np.zeros((24, 24)),
        source_only={"target": {"boundary_jaccard": 0.4}},
        names=["conditional", "histmatch"], of=lambda n: [r for r in runs if r.name == n])


def test_comparison_figures_take_plain_data_or_any_comparison_like_object():
    comp = fake_comparison()
    fig = viz.method_predictions(comp, crop=16)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["target image", "labels (evaluation only)",
                                                      "source only (M3)\nJ = 0.400"]
    assert fig.axes[3].get_title() == "conditional\nJ = 0.600"
    curves = {n: np.array([[e["target"]["boundary_jaccard"] for e in r.epochs] for r in comp.of(n)])
              for n in comp.names}
    fig = viz.method_curves(curves, reference=comp.source_only["target"]["boundary_jaccard"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "conditional", "histmatch", "source only (M3)"]
    assert isinstance(viz.shortcut_figure(comp, names=("conditional",)), Figure)
    plt.close("all")


def test_pipeline_figure_follows_the_stage_table():
    from emseg_tutorial.paper.stages import PAPER_ITERATIONS

    fig = viz.pipeline_figure()
    assert isinstance(fig, Figure)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for stage in ("M1", "M2", "M3", "adaptation"):
        assert stage in text
    for budget in ("exp1", "exp2", "jitter"):
        assert f"{PAPER_ITERATIONS[budget]} paper iterations" in text
    assert "entropy" in text and "distance" in text and "no source loss" in text
    plt.close(fig)


def test_shortcut_figure_shows_every_compared_method_whose_discriminator_judges_pairs():
    """Its panels come from the method records, not from a list of names in viz."""
    from types import SimpleNamespace

    from emseg_tutorial.adapt import get_method

    epochs = [{"epoch": 0}, {"epoch": 1, "d_acc_real": 0.5, "d_acc_fake_mismatch": 0.4, "d_acc_fake_target": 0.6}]
    names = ["paper", "conditional", "conditional-paper", "adabn"]
    comp = SimpleNamespace(names=names, of=lambda n: [SimpleNamespace(epochs=epochs)])
    fig = viz.shortcut_figure(comp)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [n for n in names if get_method(n).discriminator == "pairs"] == ["conditional", "conditional-paper"]
    with pytest.raises(ValueError, match="no method with a conditional discriminator"):
        viz.shortcut_figure(SimpleNamespace(names=["paper", "adabn"], of=comp.of))


# ----------------------------------------------------------------------------------------------
# Readable at the book's width (issue 25, item 7): no figure wider than the text column, no panel
# narrower than a quarter of it, no text below the book's smallest font, with the chapters' calls.
# ----------------------------------------------------------------------------------------------
def _history(epochs=5):
    steps = np.arange(40)
    reports = [{"epoch": e, "target_boundary_fraction": 0.1 + 0.01 * e, "source_boundary_fraction": 0.12,
                "target_entropy": 0.3 - 0.02 * e, "source_val_boundary_jaccard": 0.6,
                "target": {"boundary_jaccard": 0.4 + 0.02 * e}} for e in range(epochs + 1)]
    return {"train": {"step": steps, "acc_real": np.full(40, 0.7), "acc_fake": np.full(40, 0.4)}, "epochs": reports}


def _two_score_panels(table):
    """Chapter 4's two scores against the paper's 0.80, side by side."""
    from emseg_tutorial.style import BOOK_WIDTH

    fig, axes = plt.subplots(1, 2, figsize=(BOOK_WIDTH, 0.45 * len(table) + 1.4), sharey=True)
    for ax, column in zip(axes, ["boundary", "mean_jaccard"]):
        viz.score_bars(table.clip(upper=1), column, ax=ax, reference=0.80, reference_label="paper's M2")
    axes[0].set_xlabel("boundary_jaccard\n(boundary class)")
    return fig


def _figures():
    """Name -> a call drawing one figure as a chapter calls it (five models in chapter 4, ...)."""
    import pandas as pd

    from emseg_tutorial.data.augment import Jitter
    from emseg_tutorial.data.histmatch import rank_normalize
    from emseg_tutorial.data.synthetic import make_volume
    from emseg_tutorial.labels import to_boundary_task
    from emseg_tutorial.viz import widgets

    src, tgt = make_volume("fibsem", (8, 96, 96), seed=0), make_volume("snemi", (8, 96, 96), seed=0)
    volumes = {"source (FIBSEM twin)": src, "target (SNEMI3D twin)": tgt}
    img, lab = src.image[4], src.labels[4]
    boundary = to_boundary_task(lab)
    five = {name: boundary for name in ("2:1", "5:1", "10:1", "distance", "distance 10:1")}
    table = pd.DataFrame({"boundary": [1.0, 2.0], "non-boundary": [1.0, 0.9], "mean_jaccard": [0.5, 0.6]},
                         index=["none", "ratio:2"])
    long = pd.DataFrame({"stage": ["a", "a", "b"], "seed": [0, 1, 0], "boundary_jaccard": [.5, .7, .4]})
    history = {"train": {"step": list(range(30)), "loss": list(np.linspace(1, 0.2, 30))},
               "val": [{"step": 10, "mean_jaccard": 0.4}, {"step": 20, "mean_jaccard": 0.5}]}
    patches = {"source": src.image[None, None, 4, :64, :64].astype(np.float32),
               "target": tgt.image[None, None, 4, :64, :64].astype(np.float32)}
    comp = fake_comparison()
    return {
        "pipeline": viz.pipeline_figure,
        "domains": lambda: viz.show_domains(volumes),
        "neighbour slices": lambda: viz.neighbour_slices(src, count=3),
        "class fractions": lambda: viz.class_fraction_bars(volumes),
        "histograms": lambda: viz.intensity_histograms(volumes),
        "drift": lambda: viz.slice_drift(volumes),
        "weight maps (ch. 2, four columns asked)": lambda: viz.weight_maps_figure(
            boundary, {n: np.random.rand(96, 96) for n in ("a", "b", "c", "d", "e", "f")}, img, task="boundary",
            ncols=4, panel=2.8),
        "paper weight maps": lambda: viz.paper_weight_maps_figure(lab, img, ncols=2),
        "weight profiles": lambda: viz.weight_profiles({"w = H": np.random.rand(48)}, boundary[0, :48]),
        "class weights": lambda: viz.class_weight_bars(table),
        "training curves": lambda: viz.training_curves({"M1": history, "no weights": history}),
        "predictions (ch. 4, five models)": lambda: viz.prediction_panels(img, boundary, five, task="boundary"),
        "boundary errors (ch. 4, five models)": lambda: viz.boundary_error_panels(boundary, five),
        "score bars": lambda: viz.score_bars(table, "mean_jaccard", reference=0.72),
        "score bars, two panels (ch. 4)": lambda: _two_score_panels(table),
        "seed score bars": lambda: viz.seed_score_bars(long, reference=0.8),
        "jitter": lambda: viz.jitter_examples(img[:64, :64], Jitter()),
        "adversarial step": viz.adversarial_diagram,
        "conditional step": lambda: viz.adversarial_diagram(conditional=True),
        "snapshots (ch. 5)": lambda: viz.adaptation_snapshots(img, boundary, [np.random.rand(96, 96)] * 6),
        "diagnostics (ch. 5)": lambda: viz.adaptation_diagnostics(_history()),
        "method predictions (ch. 6)": lambda: viz.method_predictions(comp, crop=16),
        "method curves": lambda: viz.method_curves({"paper": np.random.rand(2, 4)}, reference=0.4),
        "shortcut": lambda: viz.shortcut_figure(comp, names=("conditional",)),
        "rank normalisation": lambda: viz.rank_normalisation_figure(patches, rank_normalize),
        "gap Dice": lambda: viz.gap_dice_figure({"source": np.array([0.9, 0.5, 0.2])}, [1, 4, 8], chosen=8),
        "slice browser": lambda: widgets.slice_browser(src, static=True),
        "weight map explorer": lambda: widgets.weight_map_explorer(lab, img, static=True),
        "ratio explorer": lambda: widgets.ratio_weight_explorer(boundary, img, static=True),
    }


@pytest.fixture(scope="module")
def book_style():
    from emseg_tutorial.style import use_book_style

    before = dict(plt.rcParams)
    use_book_style()
    yield
    plt.rcParams.update(before)


def test_every_figure_is_readable_at_book_width(book_style):
    from emseg_tutorial.style import BOOK_WIDTH, MAX_COLUMNS

    problems = {}
    for name, draw in _figures().items():
        fig = draw()
        found = viz.readability_problems(fig)
        columns = {round(ax.get_position().x0, 2) for ax in fig.axes
                   if ax.get_label() != "<colorbar>" and (ax.axison or ax.images)}
        if len(columns) > MAX_COLUMNS:
            found.append(f"{len(columns)} panels side by side")
        if found:
            problems[name] = found
        assert fig.get_figwidth() <= BOOK_WIDTH + 1e-6
        plt.close(fig)
    assert not problems, problems


def test_readability_problems_names_what_is_wrong(book_style):
    fig, axes = plt.subplots(1, 7, figsize=(15, 2))
    axes[0].set_title("tiny", fontsize=7)
    found = viz.readability_problems(fig)
    assert found[0] == "figure is 15.0 in wide, the book 8 in"
    assert any(p.startswith("panel 0 ('tiny') is") for p in found)
    assert "text 'tiny' is 7 pt" in found
    plt.close(fig)


def test_one_idea_per_figure_in_chapter_4(book_style):
    """The seven-panel predictions and their boundary errors are two figures of three columns."""
    truth = np.full((32, 32), 2, np.uint8)
    truth[:, 15] = 1
    five = {f"model {i}": truth for i in range(5)}
    predictions = viz.prediction_panels(np.zeros((32, 32), np.uint8), truth, five, task="boundary")
    errors = viz.boundary_error_panels(truth, five)
    assert [ax.get_title() for ax in predictions.axes] == ["image", "ground truth", *five, "", ""]
    assert [ax.get_title() for ax in errors.axes] == ["boundary (truth)", *five]
    assert [t.get_text() for t in errors.legends[0].get_texts()] == ["hit", "miss", "false alarm", "unlabelled"]
    diagnostics = viz.adaptation_diagnostics(_history())
    assert len(diagnostics.axes) == 4 and diagnostics.axes[0].get_subplotspec().get_geometry()[:2] == (2, 2)
    plt.close("all")
