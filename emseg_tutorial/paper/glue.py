"""Numbers of a run into the book's prose: ``{glue:text}`` keys for every value a chapter quotes.

A chapter computes its numbers with a library function (:func:`.adaptation.adaptation_numbers`,
:func:`.comparison.comparison_numbers`) and hands them to :func:`glue_numbers`; its markdown then
reads ``{glue:text}`ch5_j_last:.3f``` and the built page shows this build's value. The instructor
guide reads the same keys across pages (``{glue:text}`../05_experiment3.ipynb::ch5_j_last:.3f```,
myst-nb 1.x). Outside a book build (Colab, a plain Jupyter) myst-nb may be missing: then nothing is
glued, and the chapter's printed findings carry the same numbers.

Examples
--------
>>> glue_keys("ch5", {"j_last": 0.31, "epochs": 4})
['ch5_j_last', 'ch5_epochs']
"""

from __future__ import annotations

from typing import Mapping


def glue_keys(prefix: str, numbers: Mapping[str, object]) -> list[str]:
    """The glue key of every entry: ``<prefix>_<name>``."""
    return [f"{prefix}_{name}" for name in numbers]


def glue_numbers(prefix: str, numbers: Mapping[str, object]) -> list[str]:
    """Glue every value of ``numbers`` under ``<prefix>_<name>`` without displaying it.

    Values should be plain ``int``, ``float`` or ``str`` (numpy scalars would render as
    ``np.float64(...)``, which a format spec such as ``:.3f`` cannot read). Returns the keys
    glued, none when myst-nb is not installed.
    """
    try:
        from myst_nb import glue
    except ImportError:
        return []
    keys = glue_keys(prefix, numbers)
    for key, value in zip(keys, numbers.values()):
        glue(key, value, display=False)
    return keys
