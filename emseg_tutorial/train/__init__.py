"""Training: supervised (Experiments 1 and 2, jitter) and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint, save_json
from .supervised import TrainConfig, TrainResult, experiment_config, split_slices, train_supervised, validate

__all__ = ["TrainConfig", "TrainResult", "train_supervised", "experiment_config", "split_slices", "validate",
           "save_checkpoint", "load_checkpoint", "save_json"]

from .adversarial import (AdaptConfig, AdaptResult, METHODS, adapt, discriminator_step, generator_step,  # noqa: E402
                          one_hot)
from .adabn import adapt_batchnorm  # noqa: E402

__all__ += ["AdaptConfig", "AdaptResult", "METHODS", "adapt", "adapt_batchnorm", "discriminator_step", "generator_step",
            "one_hot"]
