"""Unsupervised adaptation of a source model to an unlabelled target (Experiment 3 and beyond).

=================  ===============================================================
module             owns
=================  ===============================================================
:mod:`.loop`       :class:`AdaptConfig`, :func:`adapt`: the training loop
:mod:`.steps`      one step function per trained method, the two adversarial updates
:mod:`.adabn`      AdaBN with exact batch-norm statistics
:mod:`.methods`    the registry of every method, :func:`run_method` (CLI and chapter 6)
:mod:`.diagnostics` epoch reports, snapshots, warnings and the label-free rule
=================  ===============================================================
"""

from .adabn import adapt_batchnorm
from .diagnostics import WARNINGS, adaptation_warnings, label_free_choice, oracle_choice
from .loop import METHOD_DEFAULTS, METHODS, AdaptConfig, AdaptResult, adapt
from .methods import ALL_METHODS, VARIANTS, MethodRun, resolve, run_method
from .steps import discriminator_step, generator_step, one_hot

__all__ = ["AdaptConfig", "AdaptResult", "METHODS", "METHOD_DEFAULTS", "ALL_METHODS", "VARIANTS", "MethodRun",
           "adapt", "adapt_batchnorm", "run_method", "resolve", "discriminator_step", "generator_step", "one_hot",
           "WARNINGS", "adaptation_warnings", "label_free_choice", "oracle_choice"]
