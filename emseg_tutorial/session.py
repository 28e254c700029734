"""The settings of a run, and the one place the ``EMSEG_*`` environment variables are read.

:func:`setup` is the fixed opening of every notebook (seed, device, preset, data source, figure
style). It returns a :class:`Session`, and that object is what every loader and trainer below
uses: chapters pass it on (``load_pair(session)``, ``get_stage("m1", session)``), the command
line builds one from its flags, and nothing deeper reads the environment again. There is no
global "current" session to fall back on: a function that needs the settings takes the session. So
``setup(data="real")`` really loads real data and ``setup(device="cpu")`` really trains on the
CPU, whatever the variables say.

=========================  =====================================================================
variable                   setting
=========================  =====================================================================
``EMSEG_PRESET``           ``ci``, ``lab``, ``cpu`` or ``gpu`` (default: ``gpu`` with CUDA, else ``cpu``)
``EMSEG_DATA``             ``synthetic`` (default) or ``real``
``EMSEG_DEVICE``           ``cpu``, ``cuda``, ``mps`` (default: the best available)
``EMSEG_RUNS``             folder of trained stages shared between chapters (default ``runs``)
``EMSEG_CACHE``            folder of downloaded datasets (default: the user cache folder)
``EMSEG_FIBSEM``           your FIBSEM image, the real-data source (with ``EMSEG_FIBSEM_LABELS``)
``EMSEG_PROGRESS``         ``0`` switches progress bars off (not the line that names a reused cached result)
``EMSEG_WIDGETS``          ``static`` draws widgets as plain figures (the book build)
``EMSEG_COMPILE``          ``1`` trains through ``torch.compile`` (eager where compiling fails)
``EMSEG_PRECISION``        ``auto`` (default), ``float32``, ``bfloat16`` or ``float16``: the
                           autocast dtype of the chapters' training and adaptation
``EMSEG_THREADS``          torch's CPU threads (default 2, the book's; ``0``: every core, faster,
                           other last digits): see :func:`~emseg_tutorial.devices.make_reproducible`
=========================  =====================================================================

Examples
--------
>>> s = setup(seed=1, preset="ci", device="cpu", verbose=False)
>>> s.preset.name, s.device.type
('ci', 'cpu')
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .data.sources import DATA_SOURCES, describe_source
from .devices import DEFAULT_THREADS, check_precision, make_reproducible, on_colab, pick_device, precision
from .presets import Preset, get_preset
from .style import use_book_style

COLAB_GPU_HINT = ("On Colab, switch on a GPU with Runtime > Change runtime type > T4 GPU, "
                  "then Runtime > Restart session; the gpu preset then runs at paper scale.")

ENV = {"preset": "EMSEG_PRESET", "data": "EMSEG_DATA", "device": "EMSEG_DEVICE", "runs": "EMSEG_RUNS",
       "cache": "EMSEG_CACHE", "fibsem_image": "EMSEG_FIBSEM", "fibsem_labels": "EMSEG_FIBSEM_LABELS",
       "progress": "EMSEG_PROGRESS", "widgets": "EMSEG_WIDGETS", "compile": "EMSEG_COMPILE",
       "precision": "EMSEG_PRECISION", "threads": "EMSEG_THREADS"}


@dataclass(frozen=True)
class Session:
    """Where and how a run works: what :func:`setup` returns and every loader and trainer uses.

    Attributes
    ----------
    preset : Preset
        Sizes and run lengths (:mod:`emseg_tutorial.presets`).
    device : torch.device
        Where networks train and predict.
    data : {"synthetic", "real"}
        The volumes the chapters load (:func:`emseg_tutorial.data.load_domain`).
    seed : int
        Seed of the run.
    runs : Path
        Folder where trained stages are kept between chapters.
    cache : Path or None
        Folder of downloaded datasets (None: the user cache folder).
    fibsem_image, fibsem_labels : str or None
        Your FIBSEM volume and labels, the real-data source when both are given.
    progress : bool
        Progress bars on long work.
    compile : bool
        Train through ``torch.compile`` (``EMSEG_COMPILE=1``; worth it on a GPU, for long runs).
    precision : {"auto", "float32", "bfloat16", "float16"}
        Autocast dtype of the stages' training and the adaptation runs
        (:func:`~emseg_tutorial.devices.precision`; ``EMSEG_PRECISION``). ``auto`` is bfloat16
        where the device runs it natively; ``float32`` reproduces a CPU without bfloat16.
    threads : int
        torch's CPU threads (``EMSEG_THREADS``, default
        :data:`~emseg_tutorial.devices.DEFAULT_THREADS`; 0: torch's own count), fixed by
        :func:`setup` and the command line because the last digits of a CPU result depend on it.
    started : float
        ``time.perf_counter()`` when the session was made (:meth:`elapsed`): a chapter's last cell
        reports its own running time from it.
    """

    preset: Preset
    device: torch.device
    data: str = "synthetic"
    seed: int = 0
    runs: Path = Path("runs")
    cache: Path | None = None
    fibsem_image: str | None = None
    fibsem_labels: str | None = None
    progress: bool = True
    compile: bool = False
    precision: str = "auto"
    threads: int = DEFAULT_THREADS
    started: float = field(default_factory=time.perf_counter, compare=False, repr=False)

    def elapsed(self) -> float:
        """Seconds since the session was made (since ``setup()`` in a chapter's first cell)."""
        return time.perf_counter() - self.started

    def describe(self) -> str:
        """One paragraph for the notebook's first output."""
        lines = [f"preset: {self.preset.name}   data: {self.data}   device: {self.device}   seed: {self.seed}"
                 + ("" if self.precision == "auto" else f"   precision: {self.precision}")
                 + ("" if self.threads == DEFAULT_THREADS else f"   threads: {self.threads or 'all'}")]
        if self.device.type == "cpu" and on_colab():
            lines.append(COLAB_GPU_HINT)
        elif self.device.type == "cpu":
            quickest = ("" if self.preset.name == "ci" else " For the quickest run use the ci preset: "
                        "emseg_tutorial.setup(preset='ci') in this cell, or EMSEG_PRESET=ci.")
            lines.append("No GPU found: running on the CPU." + quickest)
        return "\n".join(lines)

    def replace(self, **changes) -> "Session":
        """A copy with some settings changed (``session.replace(preset=get_preset("ci"))``)."""
        return replace(self, **changes)


def _env(key: str) -> str | None:
    value = os.environ.get(ENV[key], "").strip()
    return value or None


def _setting(value, key: str, check, names: dict[str, str] | None = None):
    """``check(value)`` for an argument, else for the environment variable; errors name the source.

    ``names`` maps a setting to what the caller calls it (the command line: ``--device``).
    """
    source = (names or {}).get(key, f"argument {key}")
    if value is None:
        value, source = _env(key), f"environment variable {ENV[key]}"
    if value is None:
        return check(None)
    try:
        return check(value)
    except ValueError as err:
        raise ValueError(f"{err} (from {source}={value!r})") from None


def _data_source(value: str | None) -> str:
    value = (value or "synthetic").lower()
    if value not in DATA_SOURCES:
        raise ValueError(f"unknown data source {value!r}; expected one of {DATA_SOURCES}")
    return value


def _precision(value: str | None, device: torch.device) -> str:
    mode = check_precision((value or "auto").lower())
    precision(device, mode)  # float16 needs CUDA: say so now, not at the first training step
    return mode


def _threads(value: str | int | None) -> int:
    if value is None:
        return DEFAULT_THREADS
    try:
        threads = int(value)
    except (TypeError, ValueError):
        threads = -1
    if threads < 0 or str(value).strip() != str(threads):
        raise ValueError(f"CPU threads must be an integer >= 0 (0: every core), got {value!r}")
    return threads


def _widgets(value: str | None) -> str:
    return "static" if (value or "").lower() == "static" else "interactive"


def from_env(seed: int = 0, preset: str | Preset | None = None, data: str | None = None,
             device: str | torch.device | None = None, *, names: dict[str, str] | None = None) -> Session:
    """A :class:`Session` from the arguments, filling what is None from the environment.

    ``names`` says how the caller's user calls each setting in messages (the command line
    passes ``{"device": "--device", "preset": "--preset"}``); by default "argument device".

    Raises
    ------
    ValueError
        An unknown preset, data source or device, in one line naming the argument or variable
        and the value, e.g. ``unknown device 'bogus'; ... (from --device='bogus')``.
    """
    preset = preset if isinstance(preset, Preset) else _setting(preset, "preset", get_preset, names)
    runs, cache = _env("runs"), _env("cache")
    device = _setting(device, "device", pick_device, names)
    return Session(preset=preset, device=device,
                   data=_setting(data, "data", _data_source, names), seed=seed, runs=Path(runs or "runs"),
                   cache=Path(cache) if cache else None, fibsem_image=_env("fibsem_image"),
                   fibsem_labels=_env("fibsem_labels"), progress=_env("progress") != "0",
                   compile=_env("compile") == "1", precision=_setting(None, "precision", lambda v: _precision(v, device), names),
                   threads=_setting(None, "threads", _threads, names))


def preset_from_env() -> str | None:
    """The preset ``EMSEG_PRESET`` names, unchecked, or None when it is not set.

    The command line's ``train`` trains to convergence unless a preset (or a step count) is
    chosen: this says whether the environment chose one.
    """
    return _env("preset")


def setup(seed: int = 0, preset: str | Preset | None = None, data: str | None = None,
          device: str | None = None, verbose: bool = True) -> Session:
    """Seed everything, fix the CPU threads and deterministic kernels, pick the device, read the
    preset and data source, style figures.

    The seed and thread count go through :func:`~emseg_tutorial.devices.make_reproducible`: on
    the same kind of machine a chapter then repeats its numbers to the printed digit.

    Parameters
    ----------
    seed : int
        Seed for Python, NumPy and torch.
    preset, data, device : str, optional
        Override ``EMSEG_PRESET``, ``EMSEG_DATA`` and ``EMSEG_DEVICE``.
    verbose : bool
        Print a one-paragraph summary (and, on a Colab CPU runtime, how to get a GPU), and show
        which data the chapter runs on (:func:`~emseg_tutorial.data.sources.describe_source`),
        so the text of every chapter says whether its numbers come from the synthetic twins or
        from real data.

    Returns
    -------
    Session
        Pass it to the loaders and trainers (nothing keeps it for them).
    """
    session = from_env(seed, preset, data, device)
    make_reproducible(seed, session.threads, session.device)
    use_book_style()
    if verbose:
        print(session.describe())
        show_markdown(describe_source(session))
    return session


def child_environment(**settings: object) -> dict[str, str]:
    """This process's environment with session settings for a child process (a notebook kernel).

    Keyword names are the :class:`Session` settings of :data:`ENV` (``preset``, ``runs``,
    ``progress``, ``widgets``, ...); each becomes its ``EMSEG_*`` variable, so the names of the
    variables stay in this module.

    Examples
    --------
    >>> env = child_environment(preset="ci", progress=0)
    >>> env["EMSEG_PRESET"], env["EMSEG_PROGRESS"]
    ('ci', '0')
    """
    unknown = sorted(set(settings) - set(ENV))
    if unknown:
        raise ValueError(f"unknown session settings {unknown}; expected some of {sorted(ENV)}")
    return {**os.environ, **{ENV[key]: str(value) for key, value in settings.items()}}


def widgets_static() -> bool:
    """Whether the explorers draw plain figures (``EMSEG_WIDGETS=static``) instead of sliders.

    ``make book`` sets it: the rendered page can only show a picture anyway. Read at each call,
    so a notebook may change the variable between cells.
    """
    return _setting(None, "widgets", _widgets) == "static"


def show_markdown(text: str) -> None:
    """Display ``text`` as Markdown in a notebook, print it elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with the book and test extras
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))
