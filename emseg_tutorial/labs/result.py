"""What a check returns: a pass / fail / not-done verdict with a message for the student.

A check never raises on a wrong answer: it prints its message and returns a
:class:`CheckResult`, whose truth value is the verdict, so a half-finished notebook still runs
from top to bottom.

Examples
--------
>>> r = CheckResult("demo", "failed", "expected 3, got 4")
>>> bool(r), r.status
(False, 'failed')
>>> print(r)
✗ demo: expected 3, got 4
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

#: The three verdicts and the mark printed before each message.
MARKS = {"passed": "✓", "failed": "✗", "not done": "…"}


@dataclass
class CheckResult:
    """The verdict of one exercise check.

    Attributes
    ----------
    name : str
        The exercise, as printed.
    status : {"passed", "failed", "not done"}
        ``"not done"`` when the answer is still the stub (``None`` or a function that raises
        ``NotImplementedError``).
    message : str
        What is right or wrong, and a hint.
    """

    name: str
    status: str
    message: str
    _printed: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status not in MARKS:
            raise ValueError(f"status must be one of {sorted(MARKS)}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        """True when the answer agrees with the library's reference."""
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        # wrapped, so that a notebook or the rendered book shows it without scrolling sideways
        return textwrap.fill(f"{MARKS[self.status]} {self.name}: {self.message}", width=96,
                             subsequent_indent="  ", break_on_hyphens=False)

    def report(self) -> "CheckResult":
        """Print the message (once per display) and return ``self``."""
        print(self)
        self._printed = True
        return self

    def _ipython_display_(self) -> None:
        # A check cell ends with the check call: its message was just printed, so the value
        # itself shows nothing more. Displayed again later (``result`` in a new cell), it prints.
        if self._printed:
            self._printed = False
            return
        print(self)
