"""Figures of the book, one module per chapter, all re-exported here.

``from emseg_tutorial import viz`` then ``viz.show_domains(...)`` draws any chapter's figure;
the modules say which chapter uses what:

========================  ==========================================================
:mod:`.common`            shared helpers: grey images, label overlays and colours, book style
:mod:`.data`              chapter 1: the two domains, slices, class fractions, drift
:mod:`.weights`           chapter 2: weight maps, weight profiles, class weights
:mod:`.training`          chapters 3 and 4: training curves, scores, predictions, jitter
:mod:`.adaptation`        chapter 5: the adversarial step, snapshots, diagnostics
:mod:`.comparison`        chapter 6: the methods compared, the domain shortcut, slice gaps
:mod:`.widgets`           parameter explorers (sliders in a live notebook) of chapters 1, 2, 4
========================  ==========================================================

Every figure function draws into axes it is given (or creates a figure) and returns the
figure, so notebooks stay short and the rendered book shows the same pictures.

:mod:`.widgets` is loaded on first use (``viz.widgets`` or ``from emseg_tutorial.viz import
widgets``), not here: it reads :func:`emseg_tutorial.session.widgets_static`, and
:mod:`emseg_tutorial.session` imports :func:`.common.use_book_style`, so importing it here
would make ``session -> viz -> widgets -> session`` an import cycle.

Examples
--------
>>> from emseg_tutorial import viz
>>> viz.show_domains is viz.data.show_domains
True
>>> viz.widgets.slice_browser.__module__
'emseg_tutorial.viz.widgets'
"""

from __future__ import annotations

import importlib

from . import adaptation, common, comparison, data, training, weights
from .adaptation import *  # noqa: F401,F403
from .common import *  # noqa: F401,F403
from .comparison import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .weights import *  # noqa: F401,F403

#: The chapter modules, in book order (``widgets`` is a module too, loaded on first use).
CHAPTER_MODULES = ("common", "data", "weights", "training", "adaptation", "comparison")

__all__ = [*common.__all__, *data.__all__, *weights.__all__, *training.__all__, *adaptation.__all__,
           *comparison.__all__, "widgets"]


def __getattr__(name: str):
    """``viz.widgets``: import the explorers' module on first use (see the module docstring)."""
    if name == "widgets":
        return importlib.import_module(".widgets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "widgets"})
