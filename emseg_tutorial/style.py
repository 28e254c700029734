"""Figure defaults of the book, set once by :func:`emseg_tutorial.setup`.

Examples
--------
>>> use_book_style()
>>> import matplotlib.pyplot as plt
>>> plt.rcParams["axes.spines.top"]
False
"""

from __future__ import annotations

import matplotlib.pyplot as plt


def use_book_style() -> None:
    """Figure defaults for the book: readable fonts, no grid clutter, compact layout."""
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 120, "font.size": 10, "axes.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "image.interpolation": "nearest",
        "figure.constrained_layout.use": True,
    })
