"""Interrupted commands: SIGINT (Ctrl-C) and SIGTERM (a batch scheduler's time limit) as one exception.

:func:`handle_signals` (what :func:`emseg_tutorial.cli.main` runs every command in) makes both
signals raise :class:`Interrupted` in the main thread. It is a :class:`KeyboardInterrupt`, so a
library ``except Exception`` never swallows it and every ``try/finally`` and context manager
on the way up runs: temporary files are removed, open files closed, a dask cluster shut down.
The command line catches it at the top and exits with ``128 + signal`` (130 for SIGINT, 143
for SIGTERM) after one line on stderr. While it unwinds, further signals are ignored, so a
second Ctrl-C cannot cut the clean-up short (SIGKILL still ends the process at once).

:func:`deferred` marks a short step that must not be cut in two (renaming the outputs of one
commit, writing a zarr chunk and its marker): a signal that arrives inside it is raised when
the step is done. Outside :func:`handle_signals`, or in another thread, it does nothing.

Examples
--------
>>> import signal
>>> with handle_signals():
...     try:
...         with deferred():
...             signal.raise_signal(signal.SIGTERM)
...             finished = True  # not cut short: the signal waits for the step to end
...     except Interrupted as err:
...         print(finished, err.name, err.exit_status)
True SIGTERM 143
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Interrupted", "deferred", "exit_status", "handle_signals", "signal_name"]

#: The signals :func:`handle_signals` turns into :class:`Interrupted`.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; raised in the main thread by :func:`handle_signals`."""

    def __init__(self, signum: int):
        super().__init__(int(signum))
        self.signum = int(signum)

    @property
    def name(self) -> str:
        """``"SIGINT"`` or ``"SIGTERM"``."""
        return signal_name(self.signum)

    @property
    def exit_status(self) -> int:
        """The shell's status of a process ended by this signal: ``128 + signum`` (130, 143)."""
        return exit_status(self.signum)


def signal_name(signum: int) -> str:
    """``signal_name(15) == "SIGTERM"``; a number without a name is ``"signal N"``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """``128 + signum``: 130 for SIGINT, 143 for SIGTERM (what a shell reports for such an end)."""
    return 128 + int(signum)


class _State:
    """The main thread's interrupt state while :func:`handle_signals` is active."""

    def __init__(self):
        self.active = False      # handlers installed
        self.depth = 0           # nesting of deferred() in the main thread
        self.pending = None      # a signal that arrived inside deferred()
        self.raised = False      # Interrupted raised: the command is unwinding, signals ignored


_STATE = _State()


def _handler(signum, frame) -> None:
    if _STATE.raised:
        return  # already unwinding: let the clean-up finish
    if _STATE.depth:
        _STATE.pending = signum
        return
    _STATE.raised = True
    raise Interrupted(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block; the old handlers come back after.

    In a thread other than the main one (where Python cannot set handlers) the block runs
    with the handlers as they are (Ctrl-C is then the usual ``KeyboardInterrupt``); a signal
    the process ignores (``SIG_IGN``, as for ``nohup`` or a script's background job) stays ignored.
    """
    global _STATE
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved, _STATE = _STATE, _State()
    # a signal the process was started ignoring (``nohup``, a background job of a script) stays ignored
    previous = {s: h for s in SIGNALS if (h := signal.getsignal(s)) is not signal.SIG_IGN}
    try:
        for s in previous:
            signal.signal(s, _handler)
        _STATE.active = True
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        _STATE = saved


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal that arrives inside the block until it ends, then raise :class:`Interrupted`.

    For steps that must not be cut in two. A no-op outside :func:`handle_signals` and in
    threads other than the main one.
    """
    state = _STATE
    if not state.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if not state.depth and state.pending is not None and not state.raised:
            signum, state.pending = state.pending, None
            state.raised = True
            raise Interrupted(signum)
