"""The rendered book, opened in a real (headless) browser.

Needs Chromium (``/usr/bin/chromium`` or ``chromium`` on PATH; Debian: ``apt-get install
chromium``) and a built book in ``_build/html`` (``make book``; CI builds it at the ``ci``
preset first). Without either, or when the build is older than ``_toc.yml``, the tests are
skipped, with the reason. For every page of
``_toc.yml`` the DOM after loading must hold no Python traceback and no failed exercise check;
the experiment chapters must show their figures and tables; the notebook pages must carry the
Binder and Colab launch buttons, pointing at the student version (``book/student/<name>.ipynb``).
One screenshot goes to ``_build/screenshots/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from emseg_tutorial.booktools import student_path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
EXPERIMENTS = re.compile(r"book/0[3-9]_")   # chapters that train models and report results
SCREENSHOT_PAGE = "book/05_experiment3"


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (/usr/bin/chromium or chromium on PATH); "
                                               "install it, e.g. apt-get install chromium"),
    pytest.mark.skipif(not (HTML / "index.html").exists(),
                       reason="no rendered book in _build/html; run `make book` (EMSEG_PRESET=ci is enough) first"),
    pytest.mark.skipif((HTML / "searchindex.js").exists()
                       and (HTML / "searchindex.js").stat().st_mtime < (ROOT / "_toc.yml").stat().st_mtime,
                       reason="_build/html is older than _toc.yml; run `make book` to check the current book"),
]


def _toc_pages() -> list[str]:
    text = (ROOT / "_toc.yml").read_text()
    root = re.search(r"^root:\s*(\S+)", text, flags=re.MULTILINE).group(1)
    return [root] + re.findall(r"^\s*-\s*file:\s*(\S+)", text, flags=re.MULTILINE)


PAGES = _toc_pages()


def _run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


class _Page(HTMLParser):
    """What the checks need from a page's DOM."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.tables = 0
        self.links: list[str] = []
        self.error_classes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        elif tag == "table":
            self.tables += 1
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if "traceback" in classes or "error" in classes and "output" in classes:
            self.error_classes.append(f"<{tag} class={attrs.get('class')!r}>")

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def doms(tmp_path_factory) -> dict[str, tuple[str, _Page]]:
    tmp = tmp_path_factory.mktemp("chromium")
    found = {}
    for page in PAGES:
        path = HTML / f"{page}.html"
        if not path.exists():
            continue
        done = _run_chromium(tmp, "--dump-dom", path.as_uri())
        assert done.returncode == 0 and "<html" in done.stdout, f"{page}: chromium failed: {done.stderr[-500:]}"
        parsed = _Page()
        parsed.feed(done.stdout)
        found[page] = (done.stdout, parsed)
    return found


@pytest.mark.parametrize("page", PAGES)
def test_page_is_built(page):
    assert (HTML / f"{page}.html").exists(), f"{page} is in _toc.yml but not in _build/html: run `make book`"


@pytest.mark.parametrize("page", PAGES)
def test_no_traceback_or_failed_check(page, doms):
    if page not in doms:
        pytest.fail(f"{page} not built")
    dom, parsed = doms[page]
    assert not parsed.error_classes, f"{page}: error outputs {parsed.error_classes[:3]}"
    text = "".join(parsed.text)
    assert "Traceback (most recent call last)" not in text, f"{page}: a Python traceback is on the page"
    failed = re.findall(r"✗ [^:\n]{1,60}:[^\n]{0,80}", text)
    assert not failed, f"{page}: an exercise check failed in the build: {failed[:2]}"


@pytest.mark.parametrize("page", [p for p in PAGES if EXPERIMENTS.match(p)])
def test_experiment_chapters_show_figures_and_tables(page, doms):
    if page not in doms:
        pytest.fail(f"{page} not built")
    _, parsed = doms[page]
    figures = [src for src in parsed.images if src.startswith("data:image") or src.endswith((".png", ".svg", ".jpg"))
               and "_static" not in src and "logo" not in src]
    assert len(figures) >= 3, f"{page}: only {len(figures)} figures ({figures[:3]})"
    for src in figures:
        if not src.startswith(("data:", "http")):  # a file next to the page
            assert (HTML / page).parent.joinpath(src).resolve().exists(), f"{page}: image {src} missing"
    assert parsed.tables >= 1, f"{page}: no table"


@pytest.mark.parametrize("page", [p for p in PAGES if (ROOT / f"{p}.ipynb").exists()])
def test_notebook_pages_have_launch_buttons(page, doms):
    if page not in doms:
        pytest.fail(f"{page} not built")
    links = doms[page][1].links
    notebook = student_path(page)  # book/student/<name>.ipynb: the launch buttons open the student version
    assert (ROOT / notebook).exists(), f"{notebook} missing: run `make labs`"
    for service, host in (("Binder", "mybinder.org"), ("Colab", "colab.research.google.com")):
        launch = [h for h in links if host in h]
        assert launch, f"{page}: no {service} launch link"
        assert all(h.endswith(notebook) for h in launch), f"{page}: {service} opens {launch}, not {notebook}"


def test_screenshot_of_an_experiment_chapter(tmp_path):
    page = SCREENSHOT_PAGE if (HTML / f"{SCREENSHOT_PAGE}.html").exists() else PAGES[0]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{Path(page).name}.png"
    target.unlink(missing_ok=True)
    done = _run_chromium(tmp_path, f"--screenshot={target}", "--window-size=1280,2000", "--hide-scrollbars",
                         (HTML / f"{page}.html").as_uri())
    assert done.returncode == 0, done.stderr[-500:]
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 20_000
