"""Figures of the book, one module per chapter, all re-exported here.

``from emseg_tutorial import viz`` then ``viz.show_domains(...)`` draws any chapter's figure;
the modules say which chapter uses what:

========================  ==========================================================
:mod:`.common`            shared helpers: grey images, label overlays and colours
:mod:`.data`              chapter 1: the two domains, slices, class fractions, drift
:mod:`.weights`           chapter 2: weight maps, weight profiles, class weights
:mod:`.training`          chapters 3 and 4: training curves, scores, predictions, jitter
:mod:`.adaptation`        chapter 5: the adversarial step, snapshots, diagnostics
:mod:`.comparison`        chapter 6: the methods compared, the domain shortcut, slice gaps
:mod:`.widgets`           parameter explorers (sliders in a live notebook) of chapters 1, 2, 4
========================  ==========================================================

Every figure function draws into axes it is given (or creates a figure) and returns the
figure, so notebooks stay short and the rendered book shows the same pictures.

Examples
--------
>>> from emseg_tutorial import viz
>>> viz.show_domains is viz.data.show_domains
True
>>> viz.widgets.slice_browser.__module__
'emseg_tutorial.viz.widgets'
"""

from __future__ import annotations

from . import adaptation, common, comparison, data, training, weights, widgets
from .adaptation import *  # noqa: F401,F403
from .common import *  # noqa: F401,F403
from .comparison import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .weights import *  # noqa: F401,F403

#: The chapter modules, in book order (the explorers are in ``widgets``).
CHAPTER_MODULES = ("common", "data", "weights", "training", "adaptation", "comparison")

__all__ = [*common.__all__, *data.__all__, *weights.__all__, *training.__all__, *adaptation.__all__,
           *comparison.__all__, "widgets"]
