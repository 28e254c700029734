"""Figure and table defaults of the book, set once by :func:`emseg_tutorial.setup`.

A figure is drawn at :data:`FIGURE_DPI` and the book's text column is about
:data:`BOOK_WIDTH` inches wide at that resolution, so a figure no wider than that is shown at
its own size and its text at the point sizes set here (never below :data:`MIN_FONT`). A wider
figure is shrunk to fit, and its text with it: the figure functions of :mod:`emseg_tutorial.viz`
stay within the width and put at most three panels side by side.

Tables (pandas) print floats with three decimals, also in columns of mixed type, which
``DataFrame.round`` leaves as they are.

Examples
--------
>>> use_book_style()
>>> import matplotlib.pyplot as plt
>>> plt.rcParams["axes.spines.top"], plt.rcParams["font.size"] >= MIN_FONT
(False, True)
>>> import pandas as pd
>>> str(pd.DataFrame({"score": [0.123456, "n/a"]})).split()  # a column of mixed type
['score', '0', '0.123', '1', 'n/a']
>>> table_number(0.0001234), table_number(2.0)
('1.2e-04', '2.000')
"""

from __future__ import annotations

import matplotlib.pyplot as plt

#: Resolution of figures in the notebooks and the book (pixels per inch).
FIGURE_DPI = 100
#: Width of the book's text column at :data:`FIGURE_DPI`, in inches: the widest figure shown unshrunk.
BOOK_WIDTH = 8.0
#: Smallest font size (points) of any text in a figure.
MIN_FONT = 9.0
#: Panels side by side at most: each then gets a third of the book's width or more.
MAX_COLUMNS = 3
#: Decimals of the floats in printed tables.
TABLE_DECIMALS = 3

_RC = {
    "figure.dpi": FIGURE_DPI, "savefig.dpi": 120, "figure.constrained_layout.use": True,
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
    "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 10, "figure.titlesize": 12,
    "axes.spines.top": False, "axes.spines.right": False, "image.interpolation": "nearest",
}


def table_number(x: float) -> str:
    """A float as printed in the book's tables: :data:`TABLE_DECIMALS` decimals, or two
    significant digits for a non-zero number that would print as zero."""
    if x != 0 and abs(x) < 0.5 * 10 ** -TABLE_DECIMALS:
        return f"{x:.1e}"
    return f"{x:.{TABLE_DECIMALS}f}"


def use_book_style() -> None:
    """Figure defaults for the book (readable fonts at book width, no grid clutter, constrained
    layout) and the tables' float format."""
    plt.rcParams.update(_RC)
    import pandas as pd

    pd.set_option("display.float_format", table_number)
