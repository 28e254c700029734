"""When a run stops: the best validation score so far, patience, and the reason for stopping.

A budgeted run (:attr:`~emseg_tutorial.train.TrainConfig.budget`) validates every
``val_every`` steps and stops at the first of: ``patience`` validations in a row without a gain
of at least :data:`MIN_DELTA` (``"patience"``), the time budget spent (``"budget"``), or
``steps`` reached (``"steps"``). :class:`EarlyStopping` holds that record; it is plain data, so
it is saved with the training state and a resumed run stops where an uninterrupted one would.

Examples
--------
>>> stop = EarlyStopping(patience=2)
>>> [stop.update(step, score) for step, score in [(10, 0.5), (20, 0.6), (30, 0.6), (40, 0.59)]]
[True, True, False, False]
>>> stop.exhausted, stop.best_step
(True, 20)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Smallest gain of the validation score that counts as an improvement (absolute; the mean Jaccard,
#: or a foreground task's IoU: :func:`~emseg_tutorial.train.supervised.stopping_key`).
MIN_DELTA = 1e-3

#: Why a run stopped, in words (:func:`stop_reason_text`).
REASONS = {"patience": "no gain of {delta:g} in {score} for {patience} validations",
           "budget": "the time budget of {budget:g} min was spent",
           "steps": "the step cap ({steps}) was reached"}
#: The scores a run stops on, in words.
SCORE_NAMES = {"mean_jaccard": "mean Jaccard", "foreground_iou": "foreground IoU"}


@dataclass
class EarlyStopping:
    """The best validation score of a run and how many validations have not beaten it.

    Attributes
    ----------
    patience : int or None
        Validations in a row without a gain of ``min_delta`` before the run stops; None never stops.
    min_delta : float
        Smallest gain that counts.
    best, best_step : float or None, int or None
        The best score and its step (None before the first validation).
    bad : int
        Validations since the best one.
    """

    patience: int | None
    min_delta: float = MIN_DELTA
    best: float | None = None
    best_step: int | None = None
    bad: int = 0

    def __post_init__(self):
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def update(self, step: int, score: float) -> bool:
        """Record a validation; True when it is the new best."""
        if self.best is None or score >= self.best + self.min_delta:
            self.best, self.best_step, self.bad = float(score), int(step), 0
            return True
        self.bad += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Whether patience has run out."""
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "EarlyStopping":
        return cls(**state)


def stop_reason_text(stop: dict, config) -> str:
    """One line saying why and where a run stopped, and which weights it kept.

    ``stop`` is ``history["stop"]`` of :func:`~emseg_tutorial.train.train_supervised`,
    ``config`` its :class:`~emseg_tutorial.train.TrainConfig`.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(patience=3, budget=10, steps=5000)
    >>> stop_reason_text({"reason": "patience", "step": 400, "kept_step": 250, "best_step": 250,
    ...                   "best_mean_jaccard": 0.8123}, cfg)
    'stopped at step 400: no gain of 0.001 in mean Jaccard for 3 validations; kept step 250 (validation mean Jaccard 0.812)'
    >>> stop_reason_text({"reason": "steps", "step": 5000, "kept_step": 5000, "best_step": 4000,
    ...                   "score": "foreground_iou", "best_foreground_iou": 0.6}, cfg).split("; ")[-1]
    'the best validation was step 4000 (validation foreground IoU 0.600)'
    """
    key = stop.get("score", "mean_jaccard")  # records without one stopped on the mean Jaccard
    name = SCORE_NAMES.get(key, key)
    why = REASONS[stop["reason"]].format(delta=MIN_DELTA, patience=config.patience, budget=config.budget or 0,
                                         steps=config.steps, score=name)
    line = f"stopped at step {stop['step']}: {why}"
    if stop.get(f"best_{key}") is not None:
        best = f"step {stop['best_step']} (validation {name} {stop[f'best_{key}']:.3f})"
        if stop.get("kept_step") == stop["best_step"]:
            line += f"; kept {best}"
        else:
            line += f"; kept the last weights (step {stop['kept_step']}); the best validation was {best}"
    return line
