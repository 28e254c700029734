"""Numbers a chapter hands to its own text: myst-nb's ``glue`` in a book build, nothing elsewhere.

A chapter computes a result in a code cell and calls ``glue("key", value)``; its Markdown then
shows the value with ``{glue:text}`key:.3f``` (same page) or
``{glue:text}`../03_experiment1.ipynb::key:.3f``` (another page, e.g. the instructor guide), so
no result is typed by hand. Outside a book build (Colab, plain Jupyter, where ``myst_nb`` may be
missing) the value is only remembered and returned, so the notebooks run anywhere; the student
notebooks, whose Markdown cannot format a glued value, print them with :func:`show_glued`.

Examples
--------
>>> import numpy as np
>>> glue("answer", np.float64(0.5))
0.5
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

__all__ = ["glue", "glue_numbers", "show_glued"]

#: Every value glued in this Python session, by key (what :func:`show_glued` prints).
_GLUED: dict[str, Any] = {}


def glue(key: str, value: Any) -> Any:
    """Store ``value`` under ``key`` for the book's ``{glue}`` roles (not displayed); return it.

    Numpy scalars are stored as Python numbers, whose plain-text form (``0.5``, not
    ``np.float64(0.5)``) is what ``{glue:text}`key:.3f``` formats.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    _GLUED[key] = value
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: nothing to store
        return value
    myst_glue(key, value, display=False)
    return value


def glue_numbers(prefix: str, numbers: Mapping[str, Any]) -> list[str]:
    """:func:`glue` every value of ``numbers`` under ``<prefix>_<name>``; return the keys.

    Chapters 5 and 6 hand a whole dict of a run's numbers to their prose this way
    (:func:`~emseg_tutorial.paper.adaptation.adaptation_numbers`,
    :func:`~emseg_tutorial.paper.comparison.comparison_numbers`).

    Examples
    --------
    >>> glue_numbers("ch5", {"j_last": 0.31, "epochs": 4})
    ['ch5_j_last', 'ch5_epochs']
    """
    keys = [f"{prefix}_{name}" for name in numbers]
    for key, value in zip(keys, numbers.values()):
        glue(key, value)
    return keys


def show_glued(*placeholders: str) -> None:
    """Print ``[key] value`` for every ``key:format`` placeholder of a Markdown cell.

    The student notebooks put a call of this after each Markdown cell whose text holds
    ``{glue:text}`key:format``` (shown there as ``[key]``): Jupyter and Colab cannot fill the
    value in, so this prints it from the student's own run.

    Examples
    --------
    >>> _ = glue("demo_share", 0.1234)
    >>> show_glued("demo_share:.1%", "demo_later:.3f", "../03_experiment1.ipynb::m1_j:.3f")
    [demo_share] 12.3%
    [demo_later] not computed yet in this run (it may come from a cell further down)
    [m1_j] a number of 03_experiment1.ipynb, printed there
    """
    for placeholder in placeholders:
        page, _, rest = placeholder.rpartition("::")
        key, _, spec = rest.partition(":")
        if page:
            shown = f"a number of {Path(page).name}, printed there"
        elif key not in _GLUED:
            shown = "not computed yet in this run (it may come from a cell further down)"
        else:
            try:
                shown = format(_GLUED[key], spec)
            except (TypeError, ValueError):
                shown = str(_GLUED[key])
        print(f"[{key}] {shown}")
