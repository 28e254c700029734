"""Progress bars for long work, switched off where nobody watches.

Bars come from ``tqdm.auto``: a widget in Jupyter, text in a terminal. They are off when the
caller asks (``enabled=False``: the command line's ``--quiet``, or a session whose
``progress`` is off because ``EMSEG_PROGRESS=0``, which the Makefile sets for ``make book`` and
``make test`` so the rendered book and CI logs carry no half-drawn bars), and, for text bars,
when the output is not a terminal.

:func:`note` prints the one line that says a cached result was reused (or a run continued)
and from where: always, bars or not (``make book`` shows them in the chapters' outputs), since
a result read back from disk is something the reader must be told.

Examples
--------
>>> sum(progress(range(3), desc="demo", enabled=False))
3
>>> note("reused m1 (seed 0) from runs/ci/m1-seed0.pt")
reused m1 (seed 0) from runs/ci/m1-seed0.pt
"""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str, enabled: bool = True, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a progress bar (updated at most every 2 s) unless bars are off."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, desc=desc, disable=True, **kwargs)
    return tqdm(iterable, desc=desc, mininterval=2.0, disable=None, **kwargs)


def note(line: str) -> None:
    """Print one line: what was reused or continued, and from where."""
    print(line, flush=True)
