"""Supervised training (Experiments 1 and 2, the jitter step).

The trainer knows nothing of the paper's stages or presets: it takes a
:class:`TrainConfig`. :mod:`emseg_tutorial.paper.stages` builds those configs from the
paper's budgets; adaptation lives in :mod:`emseg_tutorial.adapt`; checkpoints and resumable
training states in :mod:`emseg_tutorial.store`. A run to convergence on a user's own volume
(a time budget, patience, a plateau schedule, the best weights kept) is a config of
:mod:`.convergence`; :mod:`.stopping` holds its stopping record.
"""

from .convergence import CONVERGE, ConvergeSize, converge_config, converge_size, with_budget
from .stopping import EarlyStopping, stop_reason_text
from .supervised import TrainConfig, TrainResult, split_slices, train_supervised, validate

__all__ = ["TrainConfig", "TrainResult", "train_supervised", "split_slices", "validate", "CONVERGE",
           "ConvergeSize", "converge_config", "converge_size", "with_budget", "EarlyStopping", "stop_reason_text"]
