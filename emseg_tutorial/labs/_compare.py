"""Helpers shared by the checks: call a student's function safely, compare arrays and numbers.

Every helper returns ``None`` when all is well, or a sentence saying what differs.
"""

from __future__ import annotations

import math
import os
import traceback
from typing import Any, Callable

import numpy as np

NOT_DONE = "not done"
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Verdict(Exception):
    """Raised inside a check to end it with ``status`` and ``message``."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def stop(status: str, message: str) -> None:
    """End the current check with ``status`` (``"failed"`` or ``"not done"``) and ``message``."""
    raise Verdict(status, message)


def fail(message: str) -> None:
    """End the current check as failed."""
    raise Verdict("failed", message)


def require_answer(answer: Any, what: str) -> None:
    """Stop with "not done" when ``answer`` is still the stub (``None`` or ``...``)."""
    if answer is None or answer is Ellipsis:
        stop(NOT_DONE, f"not done yet: set {what} in the exercise cell, then run this cell again.")


def require_function(func: Any) -> None:
    """Stop when ``func`` is missing (not done) or not callable (failed)."""
    if func is None or func is Ellipsis:
        stop(NOT_DONE, "not done yet: write the function in the exercise cell and run it, then run this cell again.")
    if not callable(func):
        fail(f"expected a function, got {type(func).__name__} {func!r:.60}.")


def call(func: Callable, *args, **kwargs) -> Any:
    """``func(*args, **kwargs)``; a stub's ``NotImplementedError`` means not done, any other
    exception fails the check with its type, message and the line that raised it."""
    try:
        return func(*args, **kwargs)
    except NotImplementedError:
        stop(NOT_DONE, "not done yet: the function still raises NotImplementedError. "
                             "Replace the stub with your code and run both cells again.")
    except Exception as error:  # noqa: BLE001 - any mistake in student code is reported, not raised
        frame = _student_frame(error)
        where = f" (line {frame.lineno}: {frame.line.strip()})" if frame is not None and frame.line else ""
        fail(f"your function raised {type(error).__name__}: {error}{where}.")


def _student_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the student's own code (not numpy's, torch's or this package's)."""
    frames = traceback.extract_tb(error.__traceback__)[1:]  # [0] is call() itself
    library = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep, _PACKAGE_DIR)
    own = [f for f in frames if not any(part in f.filename for part in library)]
    return own[-1] if own else (frames[-1] if frames else None)


def describe_input(array: np.ndarray) -> str:
    """A short description of a test input for messages: small arrays are printed in full."""
    array = np.asarray(array)
    if array.size <= 30:
        return np.array2string(array, separator=", ").replace("\n", "")
    return f"an array of shape {array.shape}"


def compare_arrays(got: Any, expected: np.ndarray, *, atol: float = 1e-5,
                   equal_nan: bool = False) -> str | None:
    """Say how ``got`` differs from ``expected`` (type, shape, values), or return ``None``."""
    if got is None:
        return "your function returned None (is a `return` missing?)"
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return f"expected an array of numbers, got {type(got).__name__}"
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return f"expected shape {expected.shape}, got shape {got.shape}"
    close = np.isclose(got, expected, atol=atol, rtol=1e-5, equal_nan=equal_nan)
    if close.all():
        return None
    bad = np.argwhere(~close)
    first = tuple(int(i) for i in bad[0])
    where = first if len(first) > 1 else first[0]
    return (f"{len(bad)} of {expected.size} values differ; the first at index {where}: "
            f"yours {got[first]:.4g}, expected {expected[first]:.4g}")


def as_number(value: Any) -> float | None:
    """``value`` as a float (numbers, 0-d arrays and tensors), or ``None`` when it is not one."""
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def close_number(got: Any, expected: float, *, atol: float = 1e-3) -> str | None:
    """Say why ``got`` is not the number ``expected`` (within ``atol``), or return ``None``."""
    value = as_number(got)
    if value is None:
        return f"expected a number, got {type(got).__name__} {got!r:.60}"
    if math.isnan(expected) and math.isnan(value):
        return None
    if not math.isclose(value, expected, abs_tol=atol, rel_tol=1e-6):
        return f"yours {value:.4g}, expected {expected:.4g}"
    return None


def matches(got: Any, reference: np.ndarray, *, atol: float = 1e-5, equal_nan: bool = False) -> bool:
    """True when ``got`` equals ``reference`` (used to recognise common mistakes)."""
    return compare_arrays(got, reference, atol=atol, equal_nan=equal_nan) is None
