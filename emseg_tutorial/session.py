"""The fixed opening of every notebook: seed, device, preset, data source, figure style."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .devices import on_colab, pick_device, set_seed
from .data.sources import describe_source
from .presets import Preset, data_source, get_preset
from .viz.common import use_book_style

COLAB_GPU_HINT = ("On Colab, switch on a GPU with Runtime > Change runtime type > T4 GPU, "
                  "then Runtime > Restart session; the gpu preset then runs at paper scale.")


@dataclass(frozen=True)
class Session:
    """What a notebook needs to know about where and how it runs."""

    preset: Preset
    device: torch.device
    data: str
    seed: int

    def describe(self) -> str:
        """One paragraph for the notebook's first output."""
        lines = [f"preset: {self.preset.name}   data: {self.data}   device: {self.device}   seed: {self.seed}"]
        if self.device.type == "cpu" and on_colab():
            lines.append(COLAB_GPU_HINT)
        elif self.device.type == "cpu":
            quickest = ("" if self.preset.name == "ci" else " For the quickest run use the ci preset: "
                        "emseg_tutorial.setup(preset='ci') in this cell, or EMSEG_PRESET=ci.")
            lines.append("No GPU found: running on the CPU." + quickest)
        return "\n".join(lines)


def setup(seed: int = 0, preset: str | None = None, data: str | None = None,
          device: str | None = None, verbose: bool = True) -> Session:
    """Seed everything, pick the device, read the preset and data source, style figures.

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

    Examples
    --------
    >>> s = setup(seed=1, preset="ci", device="cpu", verbose=False)
    >>> s.preset.name, s.device.type
    ('ci', 'cpu')
    """
    set_seed(seed)
    session = Session(preset=get_preset(preset), device=pick_device(device), data=data_source(data), seed=seed)
    use_book_style()
    if verbose:
        print(session.describe())
        show_markdown(describe_source(session.data))
    return session


def widgets_static() -> bool:
    """Whether ``EMSEG_WIDGETS=static`` asks for plain figures instead of parameter explorers.

    ``make book`` sets it: the rendered page can only show a picture anyway. Read at each call,
    so a notebook may change the variable between cells.
    """
    return os.environ.get("EMSEG_WIDGETS", "").strip().lower() == "static"


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
