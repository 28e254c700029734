"""Supervised training (Experiments 1 and 2, the jitter step).

The trainer knows nothing of the paper's stages or presets: it takes a
:class:`TrainConfig`. :mod:`emseg_tutorial.paper.stages` builds those configs from the
paper's budgets; adaptation lives in :mod:`emseg_tutorial.adapt`; checkpoints and resumable
training states in :mod:`emseg_tutorial.store`.
"""

from .supervised import TrainConfig, TrainResult, split_slices, train_supervised, validate

__all__ = ["TrainConfig", "TrainResult", "train_supervised", "split_slices", "validate"]
