"""Launching the book elsewhere: environment.yml (Binder, conda) agrees with pyproject.toml,
the launch buttons are configured, one repository URL is used everywhere, and the opening cell
tells a Colab or CPU user what to do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
yaml = pytest.importorskip("yaml")
version = pytest.importorskip("packaging.version")
requirements = pytest.importorskip("packaging.requirements")
specifiers = pytest.importorskip("packaging.specifiers")


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


#: conda package -> the Python distribution it installs
CONDA_NAMES = {"pytorch-cpu": "torch"}


def _environment() -> tuple[dict[str, str], str]:
    """``{normalised name: version spec}`` of environment.yml (conda and pip), and the python spec."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs, python = {}, ""
    for dep in env["dependencies"]:
        lines = dep["pip"] if isinstance(dep, dict) else [dep]
        for line in lines:
            if line.startswith("-"):  # -e ., pip options
                continue
            match = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", line)
            name, spec = match.group(1).lower().replace("_", "-"), match.group(2).strip()
            name = CONDA_NAMES.get(name, name)
            spec = re.sub(r"^=(?=\d)", "==", spec)  # conda's python=3.11 means 3.11.*
            if name == "python":
                python = spec
            else:
                specs[name] = spec
    return specs, python


def _lower_bound(spec: str):
    bounds = [version.Version(s.version) for s in specifiers.SpecifierSet(spec) if s.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


def _needed() -> list[requirements.Requirement]:
    project = _pyproject()["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["book"]
    return [requirements.Requirement(d) for d in deps]


@pytest.mark.parametrize("req", _needed(), ids=str)
def test_environment_yml_has_every_runtime_and_book_dependency(req):
    specs, _ = _environment()
    name = req.name.lower().replace("_", "-")
    assert name in specs, f"{req} (pyproject.toml) is missing from environment.yml"
    ours, theirs = _lower_bound(str(req.specifier)), _lower_bound(specs[name])
    if ours is not None:
        assert theirs is not None and theirs >= ours, (
            f"environment.yml allows {name}{specs[name] or ' (any version)'}, pyproject.toml needs {req.specifier}")
    for upper in (s for s in req.specifier if s.operator in ("<", "<=")):
        assert str(upper) in {str(s) for s in specifiers.SpecifierSet(specs[name])}, \
            f"environment.yml drops {name}{upper}"


def test_environment_yml_installs_torch_and_the_package_and_a_python_we_support():
    specs, python = _environment()
    assert "torch" in specs
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # the CPU build and nothing else: conda-forge's metapackage, no pip torch, no extra index
    # (pip takes the highest version of any index, so the default index's CUDA wheel can win)
    assert any(re.match(r"pytorch-cpu\b", d) for d in conda), "torch should come from conda-forge's pytorch-cpu"
    assert not any(re.match(r"(torch|pytorch)\b", line) for line in pip), "torch again in the pip section"
    assert not any("index-url" in line for line in pip), "an extra pip index lets its CUDA wheels in"
    assert "-e ." in (ROOT / "environment.yml").read_text()
    requires = specifiers.SpecifierSet(_pyproject()["project"]["requires-python"])
    pinned = re.match(r"==(\d+\.\d+)", python)
    assert pinned, f"environment.yml should pin a python minor version, got {python!r}"
    assert requires.contains(pinned.group(1) + ".0"), f"python {pinned.group(1)} is outside requires-python {requires}"


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_launch_buttons_are_configured():
    config = _config()
    assert config["repository"]["url"].startswith("https://github.com/")
    buttons = config["launch_buttons"]
    assert buttons["binderhub_url"].startswith("https://") and buttons["colab_url"].startswith("https://")
    overrides = config["sphinx"]["config"]["nb_mime_priority_overrides"]
    assert ["html", "application/vnd.jupyter.widget-view+json", 55] in overrides  # the PNG (50) wins


def test_repository_url_is_one_setting():
    from emseg_tutorial.booktools import repository_mentions, repository_url

    url = repository_url(ROOT)
    assert url == _config()["repository"]["url"]
    mentions = repository_mentions(ROOT)
    for name, urls in mentions.items():
        if name.endswith(".ipynb"):
            assert urls, f"{name}: its first cell does not install the library from the repository"
        assert set(urls) <= {url}, f"{name} uses {sorted(set(urls) - {url})}, _config.yml says {url}"


def test_install_lines_install_the_one_ref_of_config():
    """Every chapter and student notebook installs repository.branch of _config.yml, the one setting."""
    from emseg_tutorial import __version__
    from emseg_tutorial.booktools import install_ref, install_refs, release_tag

    assert install_ref(ROOT) == _config()["repository"]["branch"]
    assert release_tag() == f"v{__version__}"  # what a release is tagged (README, "Releases")
    assert _pyproject()["project"]["dynamic"] == ["version"]  # pyproject.toml reads __version__
    refs = install_refs(ROOT)
    assert any(name.startswith("student/") for name in refs), "no student notebooks in book/student/"
    for name, found in refs.items():
        assert found and set(found) == {install_ref(ROOT)}, (
            f"{name} installs {found}, expected @{install_ref(ROOT)}: run `python -m emseg_tutorial.booktools repository`")


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def test_the_ref_the_book_installs_exists_in_the_repository():
    """`pip install git+URL@REF` fails on Colab when REF was never pushed: it must be in the
    repository (a branch, or a release tag pushed before the book points at it)."""
    from emseg_tutorial.booktools import install_ref

    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    ref = install_ref(ROOT)
    candidates = [ref, f"refs/tags/{ref}", f"origin/{ref}"]
    found = [c for c in candidates if _git("rev-parse", "--verify", "--quiet", f"{c}^{{commit}}").returncode == 0]
    if not found and _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip(f"a shallow clone without {ref}; fetch it (git fetch origin {ref}) to check")
    assert found, (f"_config.yml repository.branch {ref!r} (the ref every chapter installs) is no branch or tag of "
                   f"this repository; push it first (README, 'Releases')")


def test_sync_repository_url_rewrites_a_fork(tmp_path):
    from emseg_tutorial.booktools import main, repository_mentions

    shutil.copytree(ROOT / "book", tmp_path / "book")
    config = (ROOT / "_config.yml").read_text()
    fork = "https://github.com/someone/em-labs"
    (tmp_path / "_config.yml").write_text(config.replace(_config()["repository"]["url"], fork))
    assert main(["repository", "--root", str(tmp_path)]) == 0
    mentions = repository_mentions(tmp_path)
    assert "student/01_data.ipynb" in mentions  # the student versions follow
    assert {u for urls in mentions.values() for u in urls} == {fork}
    assert f"git clone {fork} && cd em-labs" in (tmp_path / "book" / "intro.md").read_text()
    assert main(["repository", "--root", str(tmp_path / "nowhere")]) == 2


def test_launch_buttons_open_the_student_notebooks():
    """The Sphinx extension in booktools rewrites the theme's launch URLs to book/student/."""
    from types import SimpleNamespace

    from emseg_tutorial.booktools import point_launch_buttons_at_students

    config = _config()
    assert "emseg_tutorial.booktools" in config["sphinx"]["extra_extensions"]
    assert "book/student/*" in config["exclude_patterns"]  # the instructor versions are the book
    binder = "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/03_experiment1.ipynb"
    colab = "https://colab.research.google.com/github/o/r/blob/main/book/03_experiment1.ipynb"
    other = {"type": "link", "url": "https://example.org/book/03_experiment1.ipynb#top"}
    context = {"header_buttons": [
        {"label": "download-buttons", "buttons": [dict(other)]},
        {"label": "launch-buttons", "buttons": [{"url": binder}, {"url": colab}, {"type": "javascript"}]}]}
    point_launch_buttons_at_students(SimpleNamespace(srcdir=str(ROOT)), "book/03_experiment1", "page.html",
                                     context, None)
    launch = [b.get("url") for b in context["header_buttons"][1]["buttons"]]
    assert launch == [binder.replace("book/03", "book/student/03"), colab.replace("book/03", "book/student/03"), None]
    assert context["header_buttons"][0]["buttons"] == [other]  # only the launch group changes
    missing = {"header_buttons": [{"label": "launch-buttons", "buttons": [{"url": colab}]}]}
    point_launch_buttons_at_students(SimpleNamespace(srcdir=str(ROOT)), "book/intro", "page.html", missing, None)
    assert missing["header_buttons"][0]["buttons"][0]["url"] == colab  # no student version: unchanged


def test_colab_cpu_user_is_told_how_to_get_a_gpu(monkeypatch):
    from emseg_tutorial import setup
    from emseg_tutorial.session import COLAB_GPU_HINT

    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab")
    session = setup(seed=0, preset="ci", device="cpu", verbose=False)
    assert COLAB_GPU_HINT in session.describe()
    assert "Change runtime type" in COLAB_GPU_HINT
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    monkeypatch.delitem(__import__("sys").modules, "google.colab", raising=False)
    assert "preset='ci'" in setup(seed=0, preset="cpu", device="cpu", verbose=False).describe()
    assert "preset='ci'" not in setup(seed=0, preset="ci", device="cpu", verbose=False).describe()


def test_every_opening_cell_installs_picks_the_device_and_preset():
    import nbformat

    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next(c.source for c in nb.cells if c.cell_type == "code")
        assert "except ImportError" in first and "%pip install" in first, path.name
        assert "emseg_tutorial.setup(" in first, path.name  # seed, device (with the GPU hint), preset
